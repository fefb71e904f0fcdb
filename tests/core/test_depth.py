"""The nesting depth limit: values too deep to store are refused when set or committed, and documents too
deep to read are reported as corrupt, from however deep in the stack a turn runs."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.activities import message, use_every_scope
from turnstate import CorruptDocumentError, KeyRing, MemoryStorage, StateManager, StateValueError
from turnstate.document import MAX_DEPTH
from turnstate.storage.base import WriteItem
from turnstate.storage.file import FileStorage

STACK = 800
"""Frames a turn runs below the test in the deep-stack tests: most of Python's default limit of 1000."""


def nested(levels: int) -> Any:
    """A list holding a list ... ``levels`` lists deep, the innermost holding 1."""
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value


@pytest.fixture
def manager() -> StateManager:
    return StateManager(MemoryStorage())


async def below(frames: int, work: Callable[[], Awaitable[Any]]) -> Any:
    """Run ``work`` with ``frames`` more coroutine frames on the stack."""
    if frames:
        return await below(frames - 1, work)
    return await work()


async def test_a_value_at_the_limit_is_stored_and_one_level_more_is_refused(manager: StateManager) -> None:
    async with manager.turn(message()) as state:
        state.user.set("deepest", nested(MAX_DEPTH))
        with pytest.raises(StateValueError, match=rf"'user\.deeper'.*more than {MAX_DEPTH} levels"):
            state.user.set("deeper", nested(MAX_DEPTH + 1))
        assert not state.user.has("deeper")
    async with manager.turn(message()) as state:
        assert state.user.get("deepest") == nested(MAX_DEPTH)


async def test_objects_along_a_path_count_towards_the_limit(manager: StateManager) -> None:
    async with manager.turn(message()) as state:
        state.conversation.set("a.b", nested(MAX_DEPTH - 1))
        with pytest.raises(StateValueError, match=rf"'conversation\.a\.c'.*{MAX_DEPTH}"):
            state.conversation.set("a.c", nested(MAX_DEPTH))
        with pytest.raises(StateValueError, match=rf"'conversation\.x\.y'.*{MAX_DEPTH}"):
            state.set_value("conversation.x.y", {"z": nested(MAX_DEPTH - 1)})
        with pytest.raises(StateValueError, match=rf"'user\.t'.*{MAX_DEPTH}"):
            state.set_value("user.t", (nested(MAX_DEPTH),))
        # a path of n segments puts n - 1 objects above its value
        long_path = ".".join(["p"] * (MAX_DEPTH + 2))
        with pytest.raises(StateValueError, match=rf"{MAX_DEPTH}"):
            state.user.set(long_path, 1)
        with pytest.raises(StateValueError, match=rf"{MAX_DEPTH}"):
            state.user.incr(long_path)
        with pytest.raises(StateValueError, match=rf"{MAX_DEPTH}"):
            state.user.set(".".join(["p"] * (MAX_DEPTH + 1)), [])
        state.user.set(".".join(["p"] * (MAX_DEPTH + 1)), 1)
        assert not state.conversation.has("a.c")
        assert not state.conversation.has("x")
        assert not state.user.has("t")


async def test_a_value_far_past_the_limit_is_refused_from_deep_in_the_stack(manager: StateManager) -> None:
    async with manager.turn(message()) as state:

        async def set_deep() -> None:
            state.user.set("deep", nested(950))

        with pytest.raises(StateValueError, match=rf"'user\.deep'.*{MAX_DEPTH}"):
            await below(STACK, set_deep)
        assert not state.user.has("deep")


async def test_a_live_list_deepened_in_place_is_refused_at_commit_and_nothing_is_written() -> None:
    storage = MemoryStorage()
    manager = StateManager(storage)
    async with manager.turn(message()) as state:
        state.conversation.set("log", [])
        state.user.set("name", "ann")
    before = await storage.read(list(await _keys(storage)))
    refused = rf"'conversation\.log\.0(\.0)*'.*more than {MAX_DEPTH} levels"
    for levels in (MAX_DEPTH + 1, 5000):
        with pytest.raises(StateValueError, match=refused):
            async with manager.turn(message()) as state:
                state.user.set("name", "bob")
                log = state.conversation.get("log")
                log.append(nested(levels - 1))
        assert await storage.read(list(before)) == before
    async with manager.turn(message()) as state:
        assert state.conversation.get("log") == []
        assert state.user.get("name") == "ann"


async def test_a_live_list_deepened_in_an_encrypted_scope_is_refused_at_commit() -> None:
    storage = MemoryStorage()
    manager = StateManager(storage, encrypt=["user.email"], keys=KeyRing({"k1": bytes(range(32))}))
    async with manager.turn(message()) as state:
        state.user.set("email", "ann@example.com")
        state.user.set("log", [])
    before = await storage.read(await _keys(storage))
    with pytest.raises(StateValueError, match=rf"'user\.log\.0(\.0)*'.*more than {MAX_DEPTH} levels"):
        async with manager.turn(message()) as state:
            state.user.get("log").append(nested(MAX_DEPTH))
    assert await storage.read(list(before)) == before


@pytest.mark.parametrize("storage_kind", ["memory", "file"])
async def test_state_at_the_limit_is_written_and_read_from_deep_in_the_stack(
    storage_kind: str, tmp_path: Path
) -> None:
    storage = MemoryStorage() if storage_kind == "memory" else FileStorage(tmp_path)
    manager = StateManager(storage)
    deepest = {"a": nested(MAX_DEPTH - 1), "b": [{"c": nested(MAX_DEPTH - 3)}]}

    async def write() -> None:
        async with manager.turn(message()) as state:
            state.conversation.set("deepest", deepest)
            state.user.set(".".join(["p"] * (MAX_DEPTH + 1)), 1)

    async def read() -> tuple[Any, Any]:
        async with StateManager(storage, document_cache=0).turn(message()) as state:
            return state.conversation.get("deepest"), state.user.get(".".join(["p"] * (MAX_DEPTH + 1)))

    await below(STACK, write)
    assert await below(STACK, read) == (deepest, 1)


async def test_a_document_deeper_than_the_limit_is_corrupt_even_from_deep_in_the_stack() -> None:
    storage = MemoryStorage()
    manager = StateManager(storage)
    async with manager.turn(message()) as state:
        state.conversation.set("deepest", nested(MAX_DEPTH))
    (key,) = [k for k in await _keys(storage) if k.startswith("conversation/")]

    async def read_deepest() -> Any:
        async with manager.turn(message()) as state:
            return state.conversation.get("deepest")

    # written at the limit, read back from a turn running most of the recursion limit deeper
    assert await below(STACK, read_deepest) == nested(MAX_DEPTH)
    for levels in (MAX_DEPTH + 1, 960, 5000):
        # a string holding brackets does not count as nesting
        document = b'{"v":1,"data":{"s":"[[[{{{","x":%s}}' % (b"[" * levels + b"1" + b"]" * levels)
        await storage.write({key: WriteItem(document)})
        for fresh in (StateManager(storage), StateManager(storage, document_cache=0)):

            async def load(fresh: StateManager = fresh) -> None:
                async with fresh.turn(message()) as state:
                    use_every_scope(state)  # an unreadable scope raises when used

            with pytest.raises(CorruptDocumentError, match=rf"{key!r}.*more than {MAX_DEPTH} levels"):
                await below(STACK, load)
        assert (await storage.read([key]))[key].value == document


async def test_brackets_inside_strings_do_not_count(manager: StateManager) -> None:
    text = "[{" * 200 + '\\"[' * 50
    async with manager.turn(message()) as state:
        state.user.set("text", text)
        state.user.set("list", [text] * 100)
    async with manager.turn(message()) as state:
        assert state.user.get("text") == text
        assert state.user.get("list") == [text] * 100


async def _keys(storage: MemoryStorage) -> list[str]:
    return [key async for key in storage.list_keys("")]
