"""One delivery of the fault sweep's flow in its own process, stopping at a failure point to be killed.

    python tests/support/fault_worker.py SPEC CONVERSATION ACTIVITY_ID POINT CUT CHECKPOINT

Prints ``at POINT`` when it gets there and waits; prints ``done`` if the point never came.
"""

from __future__ import annotations

import asyncio
import json
import sys

from tests.support.activities import message
from tests.support.backends import open_spec
from tests.support.faults import Fault, FaultyStorage, Instance


async def main(spec: str, conversation: str, activity_id: str, point: str, cut: str, checkpoint: str) -> None:
    async with open_spec(json.loads(spec)) as storage:
        instance = Instance(FaultyStorage(storage))
        activity = message(conversation=conversation, user=f"29:{conversation}", activity_id=activity_id)
        fault = Fault(point, cut=int(cut), write=1, hang=True)
        print(await instance.deliver(activity, "turn", checkpoint == "1", fault), flush=True)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:]))
