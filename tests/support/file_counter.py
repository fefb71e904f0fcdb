"""Child process for tests/core/test_file_multiprocess.py: races its siblings through one FileStorage
directory.

Usage: python tests/support/file_counter.py DIR MODE ID COUNT GO_FILE

Waits until GO_FILE exists (so all siblings start together), then, COUNT times:
  counter  increments key "counter" by read + if_match write, retrying on PreconditionFailedError
  pair     increments keys "pair/a" and "pair/b" in one batch (listed in a different order by odd IDs);
           after a partial failure only the keys not reported as written are retried
  mutex    takes key "mutex" with a create-only write, does an unprotected read-modify-write of the plain
           file DIR/../tally while holding it, checks the key still holds its own document, and releases
           it by deleting the key
Prints one JSON line: how many attempts lost a race, and (mutex) how often another process got in too.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time

from turnstate.errors import PreconditionFailedError
from turnstate.storage.base import WriteItem
from turnstate.storage.file import FileStorage


async def counter(storage: FileStorage, count: int) -> int:
    conflicts = 0
    for _ in range(count):
        while True:
            found = (await storage.read(["counter"])).get("counter")
            n = json.loads(found.value)["n"] if found else 0
            try:
                await storage.write(
                    {"counter": WriteItem(b'{"n":%d}' % (n + 1), if_match=found.etag if found else None)}
                )
                break
            except PreconditionFailedError:
                conflicts += 1
    return conflicts


async def pair(storage: FileStorage, count: int, reverse: bool) -> int:
    conflicts = 0
    keys = ["pair/b", "pair/a"] if reverse else ["pair/a", "pair/b"]
    for _ in range(count):
        pending = list(keys)
        while pending:
            found = await storage.read(pending)
            batch = {
                key: WriteItem(
                    b'{"n":%d}' % (json.loads(found[key].value)["n"] + 1 if key in found else 1),
                    if_match=found[key].etag if key in found else None,
                )
                for key in pending
            }
            try:
                await storage.write(batch)
                pending = []
            except PreconditionFailedError as exc:
                conflicts += 1
                pending = [key for key in pending if key not in exc.written]
    return conflicts


async def mutex(storage: FileStorage, count: int, me: int, tally: str) -> tuple[int, int]:
    conflicts = intruders = 0
    mine = b'{"owner":%d}' % me
    for _ in range(count):
        while True:
            try:
                await storage.write({"mutex": WriteItem(mine, if_match=None)})
                break
            except PreconditionFailedError:
                conflicts += 1
        with open(tally) as file:
            n = int(file.read())
        await asyncio.sleep(0.001)  # widen the window in which a second owner would lose an update
        with open(tally, "w") as file:
            file.write(str(n + 1))
        found = (await storage.read(["mutex"])).get("mutex")
        intruders += found is None or found.value != mine
        await storage.delete(["mutex"])
    return conflicts, intruders


async def main(directory: str, mode: str, me: int, count: int, go: str) -> None:
    storage = FileStorage(directory)
    while not os.path.exists(go):
        time.sleep(0.001)
    intruders = 0
    if mode == "counter":
        conflicts = await counter(storage, count)
    elif mode == "pair":
        conflicts = await pair(storage, count, reverse=me % 2 == 1)
    elif mode == "mutex":
        tally = os.path.join(os.path.dirname(directory), "tally")
        conflicts, intruders = await mutex(storage, count, me, tally)
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    print(json.dumps({"conflicts": conflicts, "intruders": intruders}))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]))
