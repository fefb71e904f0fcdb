"""Concurrent writers on one conversation or incident, on every storage that has landed."""

from __future__ import annotations

import asyncio
import json

import pytest

from tests.support.activities import message
from tests.support.backends import Backend
from turnstate import ANY_ETAG, MergeConflictError, Scope, StateManager, WriteItem, document

TASKS, TURNS = 8, 25


async def run_tasks(
    backend: Backend, body: object, *, tasks: int = TASKS, **options: object
) -> list[StateManager]:
    """Run ``tasks`` bot instances concurrently, each with its own storage object over the same data."""
    managers = [
        StateManager(backend.open(), max_commit_attempts=1000, backoff=0.001, **options)  # type: ignore[arg-type]
        for _ in range(tasks)
    ]

    async def worker(manager: StateManager) -> None:
        for _ in range(TURNS):
            async with manager.turn(message(conversation="hot")) as state:
                body(state)  # type: ignore[operator]
                await asyncio.sleep(0)  # let the other writers load the same version

    await asyncio.gather(*(worker(m) for m in managers))
    return managers


async def count_of(backend: Backend) -> object:
    async with StateManager(backend.open()).turn(message(conversation="hot")) as state:
        return state.conversation.get("count")


async def test_concurrent_incr_counts_every_increment(backend: Backend) -> None:
    managers = await run_tasks(backend, lambda s: s.conversation.incr("count"))
    assert await count_of(backend) == TASKS * TURNS
    assert sum(m.stats["conflicts"] for m in managers) > 0  # the schedule really did race


async def test_get_then_set_under_sum_policy_counts_every_increment(backend: Backend) -> None:
    def body(state: object) -> None:
        conv = state.conversation  # type: ignore[attr-defined]
        conv.set("count", (conv.get("count", int) or 0) + 1)

    managers = await run_tasks(backend, body, merge={"conversation.count": "sum"})
    assert await count_of(backend) == TASKS * TURNS
    assert sum(m.stats["merges"] for m in managers) > 0


async def test_document_level_last_writer_wins_loses_updates_on_the_same_schedule(backend: Backend) -> None:
    """What the SDKs we replace do: read the document, change it, write it back unconditionally."""
    storage = backend.open()
    key = "conversation/lww-baseline"

    async def worker() -> None:
        for _ in range(TURNS):
            found = await storage.read([key])
            data = document.decode(key, found[key].value).data if key in found else {}
            await asyncio.sleep(0)
            data["count"] = data.get("count", 0) + 1
            await storage.write(
                {key: WriteItem(document.encode(document.encode_data(data)), if_match=ANY_ETAG)}
            )

    await asyncio.gather(*(worker() for _ in range(TASKS)))
    lost = TASKS * TURNS - document.decode(key, (await storage.read([key]))[key].value).data["count"]
    assert lost > 0, "unconditional writes should lose updates on this schedule"
    # and turnstate on the very same schedule loses none
    await run_tasks(backend, lambda s: s.conversation.incr("count"))
    assert await count_of(backend) == TASKS * TURNS


def incident() -> Scope:
    return Scope("incident", key=lambda a: a.value["incident"])


async def two_responders(
    backend: Backend, first: object, second: object, **options: object
) -> dict[str, object]:
    """Both responders load the same incident version, then both commit."""
    a = StateManager(backend.open(), scopes=[incident()], **options)  # type: ignore[arg-type]
    b = StateManager(backend.open(), scopes=[incident()], **options)  # type: ignore[arg-type]
    act = {"value": {"incident": "INC-7"}}
    async with a.turn(message(**act)) as state:
        state.incident.set("title", "db down")
        state.incident.set("owner", None)
        state.incident.set("status", "open")
    both_loaded = asyncio.Barrier(2)

    async def responder(manager: StateManager, change: object) -> None:
        async with manager.turn(message(**act)) as state:
            await both_loaded.wait()
            change(state.incident)  # type: ignore[operator]

    results = await asyncio.gather(responder(a, first), responder(b, second), return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    async with StateManager(backend.open(), scopes=[incident()]).turn(message(**act)) as state:
        return {"data": state.incident.to_dict(), "errors": errors}


async def test_two_responders_changing_different_fields_keep_both(backend: Backend) -> None:
    result = await two_responders(
        backend, lambda i: i.set("owner", "ann"), lambda i: i.set("status", "mitigating")
    )
    assert result["errors"] == []
    assert result["data"] == {"title": "db down", "owner": "ann", "status": "mitigating"}


async def test_same_field_under_raise_surfaces_the_conflict(backend: Backend) -> None:
    result = await two_responders(
        backend,
        lambda i: i.set("owner", "ann"),
        lambda i: i.set("owner", "bob"),
        merge={"incident.owner": "raise"},
    )
    [error] = result["errors"]  # type: ignore[misc]
    assert isinstance(error, MergeConflictError)
    assert error.paths == ["incident.owner"] and "incident.owner" in str(error)
    assert result["data"]["owner"] in ("ann", "bob")  # type: ignore[index]


async def test_same_field_under_last_writer_wins_keeps_the_later_commit(backend: Backend) -> None:
    order: list[str] = []

    def set_owner(name: str) -> object:
        def change(i: object) -> None:
            i.set("owner", name)  # type: ignore[attr-defined]
            order.append(name)

        return change

    result = await two_responders(backend, set_owner("ann"), set_owner("bob"))
    assert result["errors"] == []
    # both loaded the same version; the one that committed second (after merging) wins
    assert result["data"]["owner"] in ("ann", "bob")  # type: ignore[index]


async def test_cross_scope_commit_merges_the_conflicting_scope_only(backend: Backend) -> None:
    a, b = StateManager(backend.open()), StateManager(backend.open())
    both_loaded = asyncio.Barrier(2)

    async def turn(manager: StateManager, user: str) -> None:
        async with manager.turn(message(user=user)) as state:
            await both_loaded.wait()
            state.conversation.incr("messages")
            state.user.set("last_seen", "now")

    await asyncio.gather(turn(a, "29:u1"), turn(b, "29:u2"))
    async with StateManager(backend.open()).turn(message(user="29:u1")) as state:
        assert state.conversation.get("messages") == 2
        assert state.user.get("last_seen") == "now"


@pytest.mark.parametrize("mode", ["incr", "getset"])
async def test_processes_incrementing_one_conversation_count_exactly(
    shared_backend: Backend, mode: str
) -> None:
    procs, turns = 3, 30
    workers = [shared_backend.start_worker(mode, str(turns), "multi") for _ in range(procs)]
    outputs = [w.communicate(timeout=180) for w in workers]
    for worker, (_, err) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, err
    stats = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]
    async with StateManager(shared_backend.open()).turn(message(conversation="multi")) as state:
        assert state.conversation.get("count") == procs * turns
    assert sum(s.get("turns", 0) for s in stats) == procs * turns
