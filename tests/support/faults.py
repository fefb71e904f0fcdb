"""A fault-injection harness for the exactly-once contract.

A schedule, named by its seed, delivers one activity with a failure injected at one point of its turn,
then redelivers it as a channel would (0-2 extra times, sequentially or concurrently on a second
instance, then until one delivery is acknowledged), and checks the invariant: every counter equals the
number of distinct activities, each activity is counted once under its own id, and nothing else changed.

The failures are real ones as far as the engine can tell: :class:`FaultyStorage` passes every call to a
real storage and fails, writes part of a batch, lets another writer win, or cancels the turn, at the
schedule's point. A failing sweep prints each anomaly's seed; ``TURNSTATE_SWEEP_SEEDS=SEED`` reruns it.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from tests.support.activities import message
from turnstate import Activity, DuplicateActivityError, Scope, StateManager
from turnstate.runtime import Bot, TurnContext
from turnstate.state import TurnState
from turnstate.storage.base import Storage, StoredItem, WriteItem

POINTS = (
    "none",
    "before-load",
    "after-load",
    "handler",
    "after-checkpoint",
    "between-writes",
    "before-ack",
    "conflict-retry",
    "backoff-cancel",
)
"""Where a schedule fails its first delivery."""


class Injected(Exception):
    """The failure a schedule injects (a crash, a lost connection, a failing handler)."""


def _incident_of(activity: Activity) -> str:
    conversation = activity.conversation
    return f"incident-of-{conversation.id if conversation is not None else None}"


INCIDENT = Scope("incident", key=_incident_of)


@dataclass
class Fault:
    """One delivery's failure: where, and the details the seed chose."""

    point: str = "none"
    cut: int = 1
    """between-writes: how many keys of the batch are written before the failure."""
    write: int = 1
    """before-ack: which write call of the turn fails after it was applied."""
    interfere: Callable[[], Awaitable[None]] | None = None
    hang: bool = False
    """Instead of raising, say where on stdout and wait there to be killed (the multi-process variant)."""
    reads: int = 0
    writes: int = 0

    async def at(self, point: str) -> None:
        if self.point == point:
            await self.fail(point)

    async def fail(self, point: str) -> None:
        if self.hang:
            print(f"at {point}", flush=True)
            await asyncio.sleep(3600)
        raise Injected(point)


class FaultyStorage(Storage):
    """Passes every call to ``inner``; fails as the armed :class:`Fault` says."""

    def __init__(self, inner: Storage) -> None:
        self.inner = inner
        self.capabilities = inner.capabilities  # type: ignore[misc]
        self.fault = Fault()

    async def read(self, keys: Collection[str]) -> dict[str, StoredItem]:
        fault = self.fault
        fault.reads += 1
        if fault.point == "before-load" and fault.reads == 1:
            raise Injected("before-load")
        if fault.point == "conflict-retry" and fault.writes >= 1:
            raise Injected("conflict-retry: the re-read after a conflict")
        return await self.inner.read(keys)

    async def write(self, items: Mapping[str, WriteItem]) -> dict[str, str]:
        fault = self.fault
        fault.writes += 1
        point = fault.point
        if point == "between-writes" and len(items) > 1:
            fault.point = "spent"
            if not self.inner.capabilities.atomic_batch:
                first = dict(itertools.islice(items.items(), min(fault.cut, len(items) - 1)))
                await self.inner.write(first)
            await fault.fail("between-writes")
        if (point == "conflict-retry" and fault.writes == 1) or (
            point == "backoff-cancel" and fault.writes <= 2
        ):
            assert fault.interfere is not None
            await fault.interfere()  # another activity commits first: this write conflicts
            if point == "backoff-cancel" and fault.writes == 2:
                task = asyncio.current_task()
                assert task is not None
                asyncio.get_running_loop().call_soon(task.cancel)  # lands in the backoff's sleep
        etags = await self.inner.write(items)
        if point == "before-ack" and fault.writes == fault.write:
            await fault.fail("before-ack")
        return etags

    async def delete(self, keys: Collection[str]) -> None:
        await self.inner.delete(keys)


def manager_for(storage: Storage) -> StateManager:
    return StateManager(storage, scopes=[INCIDENT])


async def flow(state: TurnState, activity_id: str, checkpoint: bool, fault: Fault) -> None:
    """A two-step flow written as the README's "Long flows" section says: the state says what is done."""
    await fault.at("after-load")
    conversation = state.conversation
    if not conversation.get(f"step_one.{activity_id}"):
        conversation.incr("count")
        conversation.incr(f"seen.{activity_id}")
        conversation.set(f"step_one.{activity_id}", True)
        await fault.at("handler")
        if checkpoint:
            await state.save()
            await fault.at("after-checkpoint")
    for scope in (state.user, state.incident):
        scope.incr("count")
        scope.incr(f"seen.{activity_id}")


@dataclass
class Instance:
    """One bot instance: its own storage object (wrapped) over the shared data."""

    storage: FaultyStorage

    async def deliver(
        self, activity: dict[str, Any], api: str, checkpoint: bool, fault: Fault | None = None
    ) -> str:
        """Deliver ``activity`` once: "done", "duplicate", or "failed: ..." (the channel then redelivers)."""
        fault = fault or Fault()
        self.storage.fault = fault
        activity_id = activity["id"]
        task = asyncio.ensure_future(self._run(activity, activity_id, api, checkpoint, fault))
        [outcome] = await asyncio.gather(task, return_exceptions=True)
        self.storage.fault = Fault()
        if isinstance(outcome, BaseException):
            if isinstance(outcome, DuplicateActivityError):
                return "duplicate"
            return f"failed: {type(outcome).__name__}: {outcome}"
        return str(outcome)

    async def _run(
        self, activity: dict[str, Any], activity_id: str, api: str, checkpoint: bool, fault: Fault
    ) -> str:
        if api == "turn":
            turn = manager_for(self.storage).turn(activity)
            async with turn as state:
                if turn.duplicate:
                    return "duplicate"
                await flow(state, activity_id, checkpoint, fault)
            return "done"
        bot = Bot()
        bot.use_state(self.storage, scopes=[INCIDENT])
        outcome = ["done"]

        @bot.on("message")
        async def handle(ctx: TurnContext) -> None:
            assert ctx.state is not None
            await flow(ctx.state, activity_id, checkpoint, fault)

        @bot.on_duplicate
        async def duplicate(ctx: TurnContext) -> None:
            outcome[0] = "duplicate"

        await bot.process(activity)
        return outcome[0]


@dataclass
class Schedule:
    seed: int
    point: str
    checkpoint: bool
    api: str
    extra: int
    concurrent: bool
    warm: bool
    cut: int
    write: int
    log: list[str] = field(default_factory=list)

    @classmethod
    def from_seed(cls, seed: int) -> Schedule:
        rng = random.Random(seed)
        point = POINTS[rng.randrange(len(POINTS))]
        return cls(
            seed=seed,
            point=point,
            checkpoint=point == "after-checkpoint" or rng.random() < 0.5,
            api=rng.choice(("turn", "bot")),
            extra=rng.randrange(3),
            concurrent=rng.random() < 0.4,
            warm=rng.random() < 0.5,
            cut=rng.randint(1, 2),
            write=rng.randint(1, 2),
        )

    def describe(self) -> str:
        return (
            f"seed {self.seed}: fail {self.point!r}, checkpoint={self.checkpoint}, api={self.api}, "
            f"then {self.extra} redeliveries ({'first one concurrent' if self.concurrent else 'sequential'})"
            f", warm={self.warm}, cut={self.cut}, write={self.write}; deliveries: {self.log}"
        )


async def run_schedule(
    schedule: Schedule, instances: tuple[Instance, Instance], interferer: Storage, tag: str
) -> list[str]:
    """Run one schedule on fresh documents; return what is wrong (nothing if the contract held)."""
    conversation = f"19:{tag}-{schedule.seed}@thread.v2"
    first, second = instances
    done: list[str] = []
    counter = itertools.count()

    def activity(name: str) -> dict[str, Any]:
        return message(conversation=conversation, user=f"29:{tag}-{schedule.seed}", activity_id=name)

    async def interfere() -> None:
        name = f"other-{next(counter)}"
        turn = manager_for(interferer).turn(activity(name))
        async with turn as state:
            await flow(state, name, False, Fault())
        done.append(name)

    if schedule.warm:
        await interfere()
    target = activity(f"act-{schedule.seed}")
    fault = Fault(schedule.point, schedule.cut, schedule.write, interfere)
    acknowledged = False

    def note(outcome: str) -> None:
        nonlocal acknowledged
        schedule.log.append(outcome)
        acknowledged = acknowledged or not outcome.startswith("failed")

    if schedule.concurrent:
        outcomes = await asyncio.gather(
            first.deliver(target, schedule.api, schedule.checkpoint, fault),
            second.deliver(target, schedule.api, schedule.checkpoint),
        )
        for outcome in outcomes:
            note(outcome)
        extra = schedule.extra - 1
    else:
        note(await first.deliver(target, schedule.api, schedule.checkpoint, fault))
        extra = schedule.extra
    for i in range(max(0, extra)):
        note(await instances[i % 2].deliver(target, schedule.api, schedule.checkpoint))
    for i in range(6):  # the channel redelivers until one delivery is acknowledged
        if acknowledged:
            break
        note(await instances[(i + 1) % 2].deliver(target, schedule.api, schedule.checkpoint))
    if not acknowledged:
        return [f"never acknowledged: {schedule.describe()}"]
    done.append(target["id"])
    return await check(interferer, activity("check"), done, schedule)


async def check(storage: Storage, activity: dict[str, Any], done: list[str], schedule: Schedule) -> list[str]:
    """The invariant, read through a manager with no faults (its turn changes nothing)."""
    async with manager_for(storage).turn(activity) as state:
        found = {
            "conversation": state.conversation.to_dict(),
            "user": state.user.to_dict(),
            "incident": state.incident.to_dict(),
        }
    seen = {name: 1 for name in done}
    wanted: dict[str, dict[str, Any]] = {
        "conversation": {"count": len(done), "seen": seen, "step_one": dict.fromkeys(done, True)},
        "user": {"count": len(done), "seen": seen},
        "incident": {"count": len(done), "seen": seen},
    }
    return [
        f"{scope}: expected {wanted[scope]}, found {found[scope]} ({schedule.describe()})"
        for scope in wanted
        if found[scope] != wanted[scope]
    ]
