"""Redelivered activities, restarts mid-flow and re-run mode, on every storage that has landed."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

from tests.support.activities import message
from tests.support.backends import Backend
from tests.support.counting import CountingStorage
from turnstate import StateManager
from turnstate.runtime import Bot, TurnContext


def runbook_bot(backend: Backend, **options: object) -> tuple[Bot, list[str]]:
    """A bot whose every message runs the next runbook step; returns it and the list of duplicates seen."""
    bot = Bot()
    bot.use_state(backend.open(), **options)  # type: ignore[arg-type]
    duplicates: list[str] = []

    @bot.on("message")
    async def step(ctx: TurnContext) -> None:
        assert ctx.state is not None
        done = ctx.state.conversation.incr("runbook.steps_run")
        await ctx.send(f"ran step {done}")

    @bot.on_duplicate
    async def duplicate(ctx: TurnContext) -> None:
        duplicates.append(str(ctx.activity.id))
        await ctx.send("already handled")

    return bot, duplicates


async def steps_run(backend: Backend) -> object:
    async with StateManager(backend.open()).turn(message()) as state:
        return state.conversation.get("runbook.steps_run")


async def test_sequential_redelivery_runs_the_step_once(backend: Backend) -> None:
    bot, duplicates = runbook_bot(backend)
    activity = message(activity_id="teams-retry-1")
    assert [r["text"] for r in await bot.process(activity)] == ["ran step 1"]
    assert [r["text"] for r in await bot.process(activity)] == ["already handled"]
    assert duplicates == ["teams-retry-1"]
    assert await steps_run(backend) == 1


async def test_redelivery_to_another_instance_is_detected(backend: Backend) -> None:
    first, _ = runbook_bot(backend)
    second, duplicates = runbook_bot(backend)
    activity = message(activity_id="teams-retry-2")
    await first.process(activity)
    await second.process(activity)
    assert duplicates == ["teams-retry-2"]
    assert await steps_run(backend) == 1


async def test_concurrent_redelivery_commits_once_and_drops_the_duplicate(backend: Backend) -> None:
    bots = [runbook_bot(backend) for _ in range(2)]
    both_running = asyncio.Barrier(2)

    for bot, _ in bots:

        @bot.use
        async def hold(ctx: TurnContext, next: object) -> None:
            await both_running.wait()  # both deliveries are inside the turn before either commits
            await next()  # type: ignore[operator]

    activity = message(activity_id="teams-retry-3")
    replies = await asyncio.gather(*(bot.process(activity) for bot, _ in bots))
    assert await steps_run(backend) == 1
    texts = sorted(r[0]["text"] if r else "" for r in replies)
    duplicates = [d for _, seen in bots for d in seen]
    assert duplicates == ["teams-retry-3"]
    assert texts == ["already handled", "ran step 1"]


async def test_many_redeliveries_of_many_activities(backend: Backend) -> None:
    bots = [runbook_bot(backend, max_commit_attempts=100)[0] for _ in range(3)]
    activities = [message(activity_id=f"a-{i}") for i in range(10)]
    await asyncio.gather(*(bot.process(a) for a in activities for bot in bots))
    assert await steps_run(backend) == 10


async def test_activity_without_id_is_processed_every_time(backend: Backend) -> None:
    bot, duplicates = runbook_bot(backend)
    for _ in range(3):
        await bot.process(message(activity_id=None))
    assert duplicates == []
    assert await steps_run(backend) == 3


async def test_turn_that_changes_nothing_writes_nothing_even_with_an_id() -> None:
    storage = CountingStorage()
    manager = StateManager(storage)
    async with manager.turn(message(activity_id="x-1")) as state:
        state.conversation.get("anything")
    assert storage.writes == []


async def test_restart_between_steps_resumes_at_the_right_step(backend: Backend) -> None:
    """The bot process is replaced by a new Bot and storage object between steps of a flow."""
    first, _ = runbook_bot(backend)
    await first.process(message(activity_id="s1"))
    await first.process(message(activity_id="s2"))
    del first  # the old instance is gone; a new one picks up from storage
    second, duplicates = runbook_bot(backend)
    await second.process(message(activity_id="s2"))  # redelivered after the restart
    replies = await second.process(message(activity_id="s3"))
    assert [r["text"] for r in replies] == ["ran step 3"]
    assert duplicates == ["s2"]
    assert await steps_run(backend) == 3


async def test_killed_process_mid_flow_resumes_without_repeating_a_step(
    shared_backend: Backend, tmp_path: Path
) -> None:
    """A bot process is SIGKILLed while handling step 2; a new process takes the redeliveries."""
    ledger = tmp_path / "ledger.txt"
    proc = shared_backend.start_worker("flow", str(ledger), "s2", "s1", "s2")
    assert proc.stdout is not None
    lines = [proc.stdout.readline().strip(), proc.stdout.readline().strip()]
    if lines != ["DONE s1 1", "HANGING s2"]:
        proc.kill()
        _, err = proc.communicate(timeout=30)
        raise AssertionError(f"worker printed {lines}: {err}")
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    # the channel redelivers s1 and s2 (no reply came), then the user goes on with s3
    result = shared_backend.run_worker("flow", str(ledger), "-", "s1", "s2", "s3")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:3] == ["DONE s1 0", "DONE s2 1", "DONE s3 1"]
    steps = [line.split()[:2] for line in ledger.read_text().splitlines()]
    assert steps == [["1", "s1"], ["2", "s2"], ["3", "s3"]]


async def test_rerun_mode_replays_the_handler_on_fresh_state(backend: Backend) -> None:
    both_loaded = asyncio.Barrier(2)
    runs: list[int] = []

    def make_bot() -> Bot:
        bot = Bot()
        bot.use_state(backend.open(), rerun_on_conflict=True)

        @bot.on("message")
        async def reserve(ctx: TurnContext) -> None:
            assert ctx.state is not None
            seats = ctx.state.conversation.get("seats", int, 10)
            runs.append(seats)
            if len(runs) <= 2:
                await both_loaded.wait()
            await ctx.send(f"seat {seats} is yours")
            ctx.state.conversation.set("seats", seats - 1)

        return bot

    a, b = make_bot(), make_bot()
    replies = await asyncio.gather(a.process(message()), b.process(message()))
    texts = sorted(r["text"] for rs in replies for r in rs)
    assert texts == ["seat 10 is yours", "seat 9 is yours"]  # the losing run's reply was discarded
    assert sorted(runs) == [9, 10, 10]
    async with StateManager(backend.open()).turn(message()) as state:
        assert state.conversation.get("seats") == 8
