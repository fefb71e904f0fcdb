"""The exactly-once contract at the edges of a commit: checkpoints, commits that gave up half-way, busy
documents, and documents written before the contract counted documents."""

from __future__ import annotations

import asyncio

import pytest

from tests.support.activities import message
from tests.support.backends import Backend
from tests.support.faults import INCIDENT, Fault, FaultyStorage, Instance, flow
from turnstate import (
    CommitRetriesExhaustedError,
    ConcurrentDeliveryError,
    StateManager,
    WriteItem,
)
from turnstate.document import decode
from turnstate.runtime import Bot, TurnContext


async def counts(backend: Backend, activity: dict[str, object]) -> dict[str, object]:
    async with StateManager(backend.open(), scopes=[INCIDENT]).turn(activity) as state:
        return {
            "conversation": state.conversation.get("count"),
            "user": state.user.get("count"),
            "incident": state.incident.get("count"),
        }


async def test_a_redelivery_after_a_checkpoint_and_a_failure_finishes_the_flow(backend: Backend) -> None:
    activity = message(activity_id="long-flow-1")
    resumed: list[bool] = []

    async def deliver(fail: bool) -> None:
        turn = StateManager(backend.open(), scopes=[INCIDENT]).turn(activity)
        async with turn as state:
            assert not turn.duplicate
            resumed.append(state.resumed)
            await flow(state, "long-flow-1", True, Fault("after-checkpoint" if fail else "none"))

    with pytest.raises(Exception, match="after-checkpoint"):
        await deliver(fail=True)
    assert await counts(backend, message()) == {"conversation": 1, "user": None, "incident": None}
    await deliver(fail=False)  # the redelivery runs again, resumed, and does step two only
    assert resumed == [False, True]
    assert await counts(backend, message()) == {"conversation": 1, "user": 1, "incident": 1}
    turn = StateManager(backend.open(), scopes=[INCIDENT]).turn(activity)
    async with turn:
        assert turn.duplicate  # now it is done everywhere


async def test_the_runtime_runs_a_checkpointed_activity_again_and_says_it_resumes(backend: Backend) -> None:
    bot = Bot()
    bot.use_state(backend.open())
    seen: list[tuple[bool, int]] = []
    duplicates: list[str] = []

    @bot.on("message")
    async def handle(ctx: TurnContext) -> None:
        assert ctx.state is not None
        conversation = ctx.state.conversation
        if not conversation.get("reserved"):
            conversation.set("reserved", True)
            await ctx.state.save()
        seen.append((ctx.state.resumed, len(seen)))
        if len(seen) == 1:
            raise RuntimeError("the ticket system timed out")
        conversation.set("ticket", "T-1")

    @bot.on_duplicate
    async def duplicate(ctx: TurnContext) -> None:
        duplicates.append(str(ctx.activity.id))

    activity = message(activity_id="teams-retry-long")
    with pytest.raises(RuntimeError):
        await bot.process(activity)
    await bot.process(activity)
    await bot.process(activity)
    assert seen == [(False, 0), (True, 1)] and duplicates == ["teams-retry-long"]


async def test_a_commit_that_gave_up_names_what_it_wrote_and_a_redelivery_completes_the_rest(
    shared_backend: Backend,
) -> None:
    """File, Redis and Cosmos write the scopes of a batch that did not conflict; the redelivery must apply
    the scope that did, and only that one."""
    backend = shared_backend
    activity = message(activity_id="gave-up-1")
    other = StateManager(backend.open(), scopes=[INCIDENT])

    class UserChangesFirst(FaultyStorage):
        async def write(self, items: dict[str, WriteItem]) -> dict[str, str]:  # type: ignore[override]
            async with other.turn(message()) as state:  # another activity's user change wins
                state.user.incr("count")
            return await self.inner.write(items)

    storage = UserChangesFirst(backend.open())
    with pytest.raises(CommitRetriesExhaustedError) as raised:
        async with StateManager(storage, scopes=[INCIDENT], max_commit_attempts=1).turn(activity) as state:
            await flow(state, "gave-up-1", False, Fault())
    error = raised.value
    assert [k.split("/")[0] for k in error.written] == ["conversation", "incident"]
    assert [k.split("/")[0] for k in error.unwritten] == ["user"] and error.keys == error.unwritten
    assert "not written" in str(error) and error.unwritten[0] in str(error)

    turn = StateManager(backend.open(), scopes=[INCIDENT]).turn(activity)
    async with turn as state:
        assert not turn.duplicate and state.resumed
        await flow(state, "gave-up-1", False, Fault())
    # the other activity's user change and this one's: every scope counts this activity once
    assert await counts(backend, message()) == {"conversation": 1, "user": 2, "incident": 1}
    turn = StateManager(backend.open(), scopes=[INCIDENT]).turn(activity)
    async with turn:
        assert turn.duplicate


async def test_32_concurrent_turns_on_one_conversation_complete_under_the_defaults(backend: Backend) -> None:
    """32 instances at once (and 32 turns of one instance at once), each incrementing one conversation."""
    loaded = asyncio.Barrier(64)
    one = StateManager(backend.open())
    managers = [StateManager(backend.open()) for _ in range(32)] + [one] * 32

    async def turn(manager: StateManager) -> None:
        async with manager.turn(message()) as state:
            await loaded.wait()
            state.conversation.incr("count")

    results = await asyncio.gather(*(turn(m) for m in managers), return_exceptions=True)
    assert [r for r in results if r is not None] == []
    assert sum(m.stats["gave_up"] for m in set(managers)) == 0
    async with StateManager(backend.open()).turn(message()) as state:
        assert state.conversation.get("count") == 64


async def test_concurrent_deliveries_with_checkpoints_let_one_carry_the_activity(
    shared_backend: Backend,
) -> None:
    """Two instances run the same checkpointing activity at once: one stops, the other finishes."""
    activity = message(activity_id="both-at-once")
    first, second = (
        Instance(FaultyStorage(shared_backend.open())),
        Instance(FaultyStorage(shared_backend.open())),
    )
    outcomes = await asyncio.gather(
        first.deliver(activity, "turn", True), second.deliver(activity, "turn", True)
    )
    assert "done" in outcomes, outcomes
    assert await counts(shared_backend, message()) == {"conversation": 1, "user": 1, "incident": 1}


async def test_a_delivery_that_finds_another_ones_checkpoint_stops(backend: Backend) -> None:
    activity = message(activity_id="raced-checkpoint")
    first = StateManager(backend.open(), scopes=[INCIDENT]).turn(activity)
    second = StateManager(backend.open(), scopes=[INCIDENT]).turn(activity)
    state_one, state_two = await first.load(), await second.load()
    state_one.conversation.set("step", 1)
    await state_one.save()
    state_two.conversation.set("step", 1)
    with pytest.raises(ConcurrentDeliveryError, match="raced-checkpoint"):
        await state_two.save()
    second.discard()
    await first.commit()
    first.close()


LEGACY = {
    "conversation": b'{"v":1,"data":{"count":2},"seen":"|c8a2b4fba8cbtpj7jj|5fec2abeab76tpj7jj"}',
    "user": b'{"v":1,"data":{"name":"Ann"},"seen":"|c8a2b4fba8cbtpj7jj"}',
}
"""A conversation's and a user's documents as the previous release wrote them for activities "legacy-1"
(which changed both) and "legacy-2" (the conversation only): windows in ``seen``, without progress marks."""


async def test_documents_of_the_previous_release_load_and_their_activities_stay_done(
    backend: Backend,
) -> None:
    storage = backend.open()

    def activity(activity_id: str) -> dict[str, object]:
        return message(conversation="19:legacy@thread.v2", activity_id=activity_id)

    async with StateManager(storage).turn(activity("probe")) as state:
        state.conversation.set("count", 0)
        state.user.set("name", "")
    for scope, value in LEGACY.items():
        [key] = [k async for k in storage.list_keys(f"{scope}/") if "legacy" in k or scope == "user"]
        await storage.write({key: WriteItem(value)})
    for done in ("legacy-1", "legacy-2"):
        turn = StateManager(storage).turn(activity(done))
        async with turn as state:
            assert turn.duplicate and state.conversation.get("count") == 2
    async with StateManager(storage).turn(activity("new-1")) as state:
        state.conversation.incr("count")
    [key] = [k async for k in storage.list_keys("conversation/") if "legacy" in k]
    stored = (await storage.read([key]))[key].value
    assert decode(key, stored).data == {"count": 3}
    assert b'"seen"' not in stored and b'"recent":"|c8a2b4fba8cbtpj7jj*|5fec2abeab76tpj7jj*|' in stored
    turn = StateManager(storage).turn(activity("legacy-2"))
    async with turn:
        assert turn.duplicate  # still known as done after the rewrite
