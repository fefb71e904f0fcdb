"""The turns the benchmarks time, run a few times as tests, so the benchmarks keep measuring real work."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import msgspec
import pytest

from turnstate import MemoryStorage

sys.path.insert(0, str(Path(__file__).parents[2] / "benchmarks"))
import bench_crypto
import bench_turn
import bench_turn_instructions


async def stored_data(storage: MemoryStorage, prefix: str) -> dict[str, Any]:
    [key] = [k async for k in storage.list_keys(prefix)]
    return msgspec.json.decode((await storage.read([key]))[key].value)["data"]  # type: ignore[no-any-return]


async def test_the_turn_benchmark_changes_and_reads_what_it_says() -> None:
    storage = MemoryStorage()
    write, read = bench_turn.turnstate_turns(storage)
    for i in range(30):
        await write(i)
    await read(30)
    conversation = await stored_data(storage, "conversation/")
    user = await stored_data(storage, "user/")
    assert len(conversation) == len(user) == len(bench_turn.KEYS)
    assert (conversation["key1"], conversation["key2"], user["key3"], user["key4"]) == (
        29,
        "text 29",
        29,
        "text 29",
    )


@pytest.mark.parametrize("change", ["plain", "encrypted"])
async def test_the_encryption_benchmark_turns_keep_their_fields_encrypted(change: str) -> None:
    storage = MemoryStorage()
    turn = await bench_crypto.user_turns(10, change, storage)
    for i in range(5):
        await turn(i)
    data = await stored_data(storage, "user/")
    assert all(set(data[f"f{i}"]) == {"$enc"} for i in range(10)) and b"contoso" not in msgspec.json.encode(
        data
    )
    assert data["plain"] == (4 if change == "plain" else 0)
    with pytest.raises(ValueError, match="'plain' or 'encrypted'"):
        await bench_crypto.user_turns(1, "every")


async def test_the_aes_floor_turns_store_the_same_fields_unencrypted() -> None:
    """The floor's turns do their AES work beside the turn: the document is the unencrypted one."""
    storage = MemoryStorage()
    turn = await bench_crypto.user_turns(10, "encrypted", storage, bare=(True, True))
    for i in range(3):
        await turn(i)
    data = await stored_data(storage, "user/")
    assert data["f0"] == "person0.2@contoso.example" and data["plain"] == 0


async def test_the_instruction_benchmark_refuses_unknown_cases() -> None:
    with pytest.raises(SystemExit, match="unknown case 'ours-write'"):
        await bench_turn_instructions.run_case("ours-write", 1)
