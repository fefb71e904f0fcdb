"""Run as a separate process by test_redis_multiprocess.py: add 1 to a shared counter N times.

It connects, prints "ready" and waits for a line on stdin, so that every worker starts at once. Each
increment reads the counter and writes it back with if_match set to the ETag it read (create-only
when absent), retrying on PreconditionFailedError. Prints how many attempts lost the race.

Usage: python redis_counter_worker.py URL standalone|cluster KEY INCREMENTS
"""

from __future__ import annotations

import asyncio
import json
import sys

from turnstate_redis import RedisStorage

from turnstate.errors import PreconditionFailedError
from turnstate.storage.base import WriteItem


async def main(url: str, mode: str, key: str, increments: int) -> int:
    conflicts = 0
    async with RedisStorage(url, cluster=mode == "cluster", key_prefix="multiprocess-test:") as storage:
        await storage.read([key])  # connect before the start signal
        print("ready", flush=True)
        sys.stdin.readline()
        for _ in range(increments):
            while True:
                item = (await storage.read([key])).get(key)
                count = json.loads(item.value)["n"] if item else 0
                value = json.dumps({"n": count + 1}).encode()
                try:
                    await storage.write({key: WriteItem(value, if_match=item.etag if item else None)})
                except PreconditionFailedError:
                    conflicts += 1
                    continue
                break
    return conflicts


if __name__ == "__main__":
    url, mode, key, increments = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    print(json.dumps({"conflicts": asyncio.run(main(url, mode, key, increments))}))
