"""Conflicts, merges, retries and duplicates are counted and logged with keys and paths, never values."""

from __future__ import annotations

import asyncio
import logging

import pytest

from tests.support.activities import message
from turnstate import MemoryStorage, MergeConflictError, StateManager

SECRET = "value-that-must-not-be-logged"


async def test_conflicts_and_merges_are_counted_and_logged_without_values(
    caplog: pytest.LogCaptureFixture,
) -> None:
    storage = MemoryStorage()
    a, b = StateManager(storage), StateManager(storage)
    both_loaded = asyncio.Barrier(2)

    async def turn(manager: StateManager, field: str) -> None:
        async with manager.turn(message()) as state:
            await both_loaded.wait()
            state.conversation.set(field, SECRET)

    with caplog.at_level(logging.INFO, logger="turnstate"):
        await asyncio.gather(turn(a, "x"), turn(b, "y"))
    stats = {k: a.stats[k] + b.stats[k] for k in a.stats}
    assert stats["conflicts"] == 1 and stats["merges"] == 1 and stats["retries"] == 1
    assert stats["commits"] == 2 and stats["turns"] == 2
    conflict = [r for r in caplog.records if "conflict" in r.getMessage()]
    assert conflict and conflict[0].keys[0].startswith("conversation/")  # type: ignore[attr-defined]
    assert all(SECRET not in r.getMessage() and SECRET not in str(r.__dict__) for r in caplog.records)


async def test_merge_conflict_under_raise_is_logged_with_the_path(caplog: pytest.LogCaptureFixture) -> None:
    storage = MemoryStorage()
    managers = [StateManager(storage, merge={"conversation.owner": "raise"}) for _ in range(2)]
    both_loaded = asyncio.Barrier(2)

    async def turn(manager: StateManager, who: str) -> None:
        async with manager.turn(message()) as state:
            await both_loaded.wait()
            state.conversation.set("owner", who + SECRET)

    with caplog.at_level(logging.INFO, logger="turnstate"):
        results = await asyncio.gather(
            *(turn(m, w) for m, w in zip(managers, "ab", strict=True)), return_exceptions=True
        )
    assert sum(isinstance(r, MergeConflictError) for r in results) == 1
    assert sum(m.stats["merge_conflicts"] for m in managers) == 1
    logged = [r for r in caplog.records if "merge conflict" in r.getMessage()]
    assert logged and "conversation.owner" in logged[0].getMessage()
    assert all(SECRET not in r.getMessage() for r in caplog.records)
    assert all(SECRET not in str(r) for r in results if isinstance(r, BaseException))


async def test_duplicates_are_counted_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    manager = StateManager(MemoryStorage())
    activity = message(activity_id="dup-1")
    async with manager.turn(activity) as state:
        state.conversation.incr("n")
    with caplog.at_level(logging.INFO, logger="turnstate"):
        turn = manager.turn(activity)
        async with turn:
            pass
    assert turn.duplicate and manager.stats["duplicates"] == 1
    assert any(getattr(r, "activity_id", None) == "dup-1" for r in caplog.records)
