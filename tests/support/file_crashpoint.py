"""Child process for tests/core/test_file_crash.py: dies by SIGKILL at one chosen instant of a FileStorage
write.

Usage: python tests/support/file_crashpoint.py DIR POINT

POINT is where the process kills itself while writing {"new": 1} to keys "a" and "b" in one batch:
  mid-temp-write   after half of the first temporary file is written
  before-rename    after the first temporary file is complete and fsynced, before it replaces "a"
  between-renames  after "a" was replaced, before "b" is
  after-renames    after both were replaced, before the directory is fsynced
Everything else is the real storage on the real file system; only the moment of death is chosen here.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

from turnstate.storage.base import WriteItem
from turnstate.storage.file import FileStorage


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def arm(point: str) -> None:
    real_write, real_replace = os.write, os.replace
    renames = 0

    def write(fd: int, data: bytes) -> int:
        if point == "mid-temp-write":
            real_write(fd, bytes(data)[: len(data) // 2])
            die()
        return real_write(fd, data)

    def replace(src: str, dst: str) -> None:
        nonlocal renames
        if point == "before-rename":
            die()
        real_replace(src, dst)
        renames += 1
        if (point == "between-renames" and renames == 1) or (point == "after-renames" and renames == 2):
            die()

    os.write = write  # type: ignore[assignment]
    os.replace = replace  # type: ignore[assignment]


async def main(directory: str, point: str) -> None:
    storage = FileStorage(directory)
    arm(point)
    await storage.write({"a": WriteItem(b'{"new":1}'), "b": WriteItem(b'{"new":1}')})
    raise SystemExit(f"crash point {point!r} was never reached")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
