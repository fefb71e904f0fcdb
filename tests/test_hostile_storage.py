"""Hostile ids on every storage: as raw storage keys and as the conversation and user ids of real turns.

Ids come from a wide alphabet (every ASCII character, trailing spaces, line breaks, NUL, lone surrogates,
look-alikes of each storage's escaping, 1,000+ characters, seeded random mixes). An id no storage can
store is refused with InvalidKeyError naming it; every other one reads back its own value, never another
id's; FileStorage creates nothing outside its directory; and other keys keep working throughout.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import pytest

from tests.support.activities import message
from tests.support.backends import Backend
from turnstate import StateManager
from turnstate.errors import InvalidKeyError
from turnstate.storage.base import Storage, WriteItem


def _seeded_random(count: int, length: tuple[int, int], seed: int) -> list[str]:
    alphabet = [chr(c) for c in range(128)] + list("éüßÅΩж日本語🙂\u200b\ufeff\u0301\u2028\U0010ffff")
    rng = random.Random(seed)
    ids = []
    for _ in range(count):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(*length)))
        ids.append(text.rstrip(" ") + "~")  # ids ending in a space are a family of their own
    return ids


ID_FAMILIES: dict[str, list[str]] = {
    "every-ascii-character": [
        *(f"a{chr(c)}b" for c in range(128)),
        *(chr(c) for c in range(128) if c != 0x20),
        # look-alikes of the escapes storages use, and case variants
        *("A", "a", "%41", "^a", "%2f", "%2F", "/", "a/b", "a%2Fb", "a%252Fb", "@", "@" + "0" * 64),
        *(".", "..", "../..", "./x", "~", "*", "?", "#", "\\", "\\\\", '"', "'", "{}", "[]"),
    ],
    "trailing-spaces": ["x ", "x  ", " ", "  ", "trailing space ", "\t ", "a\n ", "19:abc@thread.v2 "],
    "line-breaks-and-nul": [
        "a\nb",
        "a\r\nb",
        "\n",
        "\r",
        "end\n",
        "nul\x00",
        "\x00",
        "\x00\x00x",
        "\x7f\x1b[0m",
    ],
    "unicode": [
        "ünïcødé",
        "日本語",
        "🙂",
        "e\u0301",
        "é",
        "\u200b",
        "\ufeff",
        "\u2028",
        "\U0010ffff",
        "Å",
        "Å",
    ],
    "lone-surrogates": ["\ud800", "\udfff", "a\udc80b", "🙂\ud83d", "\ud83d\ude42\udc00"],
    "long": ["x" * 1000, "y" * 1001 + " z", "é" * 700, "🙂" * 400, *_seeded_random(3, (1000, 1500), 7)],
    "seeded-random": _seeded_random(80, (1, 40), 1234),
}


def _refused(text: str) -> bool:
    """An id no storage accepts: it has no UTF-8 form."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return True
    return False


def _outside_snapshot(backend: Backend, tmp_path: Path) -> set[str]:
    """Every path under the test's directory but outside a FileStorage's own, and its parent's entries."""
    state = Path(backend.spec["path"]) if backend.spec["kind"] == "file" else None
    paths = {str(p) for p in tmp_path.rglob("*") if state is None or not p.is_relative_to(state)}
    return paths | set(os.listdir(tmp_path.parent))


def _doc(i: int) -> bytes:
    return b'{"i":' + str(i).encode() + b"}"


async def _check_refused(storage: Storage, key: str, good: str) -> None:
    for attempt in (
        lambda: storage.read([good, key]),
        lambda: storage.write({good: WriteItem(b'{"overwritten":1}'), key: WriteItem(b"{}")}),
        lambda: storage.delete([good, key]),
    ):
        with pytest.raises(InvalidKeyError) as info:
            await attempt()
        assert info.value.key == key


@pytest.mark.parametrize("family", ID_FAMILIES)
async def test_hostile_ids_as_raw_storage_keys(backend: Backend, tmp_path: Path, family: str) -> None:
    storage = backend.open()
    before = _outside_snapshot(backend, tmp_path)
    keeper = "hostile/keeper"
    await storage.write({keeper: WriteItem(b'{"keeper":1}')})
    ids = list(dict.fromkeys(ID_FAMILIES[family]))
    keys = list(dict.fromkeys([*ids, *(f"hostile/{text}" for text in ids)]))
    stored = [key for key in keys if not _refused(key)]
    for key in keys:
        if _refused(key):
            await _check_refused(storage, key, keeper)
    for start in range(0, len(stored), 50):
        chunk = stored[start : start + 50]
        await storage.write({key: WriteItem(_doc(keys.index(key))) for key in chunk})
    for start in range(0, len(stored), 50):
        chunk = stored[start : start + 50]
        found = await storage.read(chunk)
        assert {key: item.value for key, item in found.items()} == {
            key: _doc(keys.index(key)) for key in chunk
        }
    assert {key async for key in storage.list_keys()} == {keeper, *stored}
    deleted = stored[::2]
    await storage.delete(deleted)
    found = await storage.read([keeper, *stored])
    assert set(found) == {keeper, *stored[1::2]}
    assert all(found[key].value == _doc(keys.index(key)) for key in stored[1::2])
    assert found[keeper].value == b'{"keeper":1}'
    assert _outside_snapshot(backend, tmp_path) == before


def _activity(text: str) -> dict[str, Any]:
    return message(conversation=f"19:{text}@thread.v2", user=f"29:{text}")


@pytest.mark.parametrize("family", ID_FAMILIES)
async def test_hostile_ids_as_conversation_and_user_ids_of_real_turns(
    backend: Backend, tmp_path: Path, family: str
) -> None:
    manager = StateManager(backend.open())
    before = _outside_snapshot(backend, tmp_path)
    ids = list(dict.fromkeys(ID_FAMILIES[family]))
    async with manager.turn(message(conversation="19:keeper", user="29:keeper")) as state:
        state.conversation.set("id", "keeper")
    for text in ids:
        if _refused(text):
            with pytest.raises(InvalidKeyError) as info:
                async with manager.turn(_activity(text)) as state:
                    state.conversation.set("turns", 1)
            assert text in info.value.key
            continue
        async with manager.turn(_activity(text)) as state:
            state.conversation.set("id", text)
            state.user.set("id", text)
            state.private.set("id", text)
    # A fresh manager (no cache) reads each id's own documents back.
    reader = StateManager(backend.open())
    for text in ids:
        if _refused(text):
            continue
        async with reader.turn(_activity(text)) as state:
            assert (state.conversation.get("id"), state.user.get("id"), state.private.get("id")) == (
                text,
                text,
                text,
            ), repr(text)
    async with reader.turn(message(conversation="19:keeper", user="29:keeper")) as state:
        assert state.conversation.get("id") == "keeper"
    assert _outside_snapshot(backend, tmp_path) == before
