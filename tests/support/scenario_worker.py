"""A bot process for the multi-process scenario tests.

    python tests/support/scenario_worker.py SPEC incr TURNS CONVERSATION
    python tests/support/scenario_worker.py SPEC getset TURNS CONVERSATION
    python tests/support/scenario_worker.py SPEC flow LEDGER HANG_ON ACTIVITY_ID...

SPEC is a tests.backends spec (JSON). Each mode prints one line per finished turn.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

from tests.support.activities import message
from tests.support.backends import open_spec
from turnstate import StateManager
from turnstate.runtime import Bot, TurnContext


async def incr(spec: dict[str, Any], turns: int, conversation: str) -> None:
    async with open_spec(spec) as storage:
        manager = StateManager(storage, max_commit_attempts=1000, backoff=0.002)
        for i in range(turns):
            async with manager.turn(
                message(conversation=conversation, activity_id=f"{os.getpid()}-{i}")
            ) as state:
                state.conversation.incr("count")
        print(json.dumps(dict(manager.stats)), flush=True)


async def getset(spec: dict[str, Any], turns: int, conversation: str) -> None:
    async with open_spec(spec) as storage:
        manager = StateManager(
            storage, merge={"conversation.count": "sum"}, max_commit_attempts=1000, backoff=0.002
        )
        for i in range(turns):
            async with manager.turn(
                message(conversation=conversation, activity_id=f"{os.getpid()}-{i}")
            ) as state:
                state.conversation.set("count", (state.conversation.get("count", int) or 0) + 1)
        print(json.dumps(dict(manager.stats)), flush=True)


async def flow(spec: dict[str, Any], ledger: str, hang_on: str, activity_ids: list[str]) -> None:
    storage = open_spec(spec)
    bot = Bot()
    bot.use_state(storage)

    @bot.on("message")
    async def runbook(ctx: TurnContext) -> None:
        assert ctx.state is not None
        if ctx.activity.id == hang_on:
            print(f"HANGING {ctx.activity.id}", flush=True)
            await asyncio.sleep(3600)
        step = (ctx.state.conversation.get("runbook.step", int) or 0) + 1
        with open(ledger, "a") as f:
            f.write(f"{step} {ctx.activity.id} {os.getpid()}\n")
            f.flush()
            os.fsync(f.fileno())
        ctx.state.conversation.set("runbook.step", step)
        await ctx.send(f"step {step} done")

    for activity_id in activity_ids:
        replies = await bot.process(
            message(f"next {activity_id}", activity_id=activity_id, conversation="flow")
        )
        print(f"DONE {activity_id} {len(replies)}", flush=True)
    await storage.aclose()


def main() -> None:
    spec = json.loads(sys.argv[1])
    mode = sys.argv[2]
    if mode == "incr":
        asyncio.run(incr(spec, int(sys.argv[3]), sys.argv[4]))
    elif mode == "getset":
        asyncio.run(getset(spec, int(sys.argv[3]), sys.argv[4]))
    elif mode == "flow":
        asyncio.run(flow(spec, sys.argv[3], sys.argv[4], sys.argv[5:]))
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main()
