"""Child process for tests/core/test_file_crash.py: commits documents until it is killed.

Usage: python tests/support/file_writer.py DIR WRITER GENERATION LOG

Owns the keys own_keys(WRITER) and rewrites them in one batch per step with increasing sequence numbers,
each precondition being the ETag it last saw; and increments the shared counter with read + compare-and-set
+ retry. Before each write it logs the documents it is about to commit ("try"), after the write returns it
logs them again ("ok"); each line is written to LOG with one unbuffered write, so a kill can at most cut
the last line short. An unexpected precondition failure on its own keys is logged as "error".
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys

from turnstate.errors import PreconditionFailedError
from turnstate.storage.base import WriteItem
from turnstate.storage.file import FileStorage

COUNTER = "shared/Counter"


def own_keys(writer: int) -> list[str]:
    return [f"writer/{writer}/plain", f"writer/{writer}/Mixed Case:ü", f"writer/{writer}/" + "Long" * 60]


class Log:
    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def __call__(self, event: str, **fields: object) -> None:
        os.write(self.fd, (json.dumps({"ev": event, **fields}) + "\n").encode())


async def main(directory: str, writer: int, generation: int, log: Log) -> None:
    storage = FileStorage(directory)
    keys = own_keys(writer)
    etags = {key: item.etag for key, item in (await storage.read(keys)).items()}
    log("ready")
    rng = random.Random()
    seq = 0
    while True:
        seq += 1
        docs = {
            key: json.dumps(
                {"writer": writer, "gen": generation, "seq": seq, "pad": "p" * rng.randrange(4000)}
            )
            for key in keys
        }
        log("try", docs=docs)
        try:
            etags = await storage.write(
                {key: WriteItem(doc.encode(), if_match=etags.get(key)) for key, doc in docs.items()}
            )
        except PreconditionFailedError as exc:
            log("error", reason=str(exc))
            raise
        log("ok", docs=docs)
        await increment(storage, log, f"{writer}.{generation}.{seq}")


async def increment(storage: FileStorage, log: Log, tag: str) -> None:
    while True:
        found = (await storage.read([COUNTER])).get(COUNTER)
        n = json.loads(found.value)["n"] + 1 if found else 1
        log("try-counter", n=n)
        try:
            await storage.write(
                {
                    COUNTER: WriteItem(
                        json.dumps({"n": n, "by": tag}).encode(), if_match=found.etag if found else None
                    )
                }
            )
        except PreconditionFailedError:
            continue
        log("ok-counter", n=n)
        return


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), Log(sys.argv[4])))
