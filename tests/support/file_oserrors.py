"""Child process for tests/core/test_storage_file.py: meets real OS errors and prints what FileStorage raised.

Usage: python tests/support/file_oserrors.py DIR too-big|no-permission

too-big:        limits this process's file size (RLIMIT_FSIZE), so writing a big document fails with EFBIG,
                the same path a full disk takes.
no-permission:  drops root to "nobody" (if running as root), so the root-owned directory refuses writes.
Prints one JSON object per operation: {"op": ..., "error": <class name or null>, "message": ...}.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import signal
import sys

from turnstate.storage.base import WriteItem
from turnstate.storage.file import FileStorage


async def attempt(op: str, coro: object) -> None:
    try:
        result = await coro  # type: ignore[misc]
    except Exception as exc:
        cause = type(exc.__cause__).__name__ if exc.__cause__ is not None else None
        print(json.dumps({"op": op, "error": type(exc).__name__, "message": str(exc), "cause": cause}))
    else:
        shown = {k: v.value.decode() for k, v in result.items()} if op.startswith("read") else None
        print(json.dumps({"op": op, "error": None, "result": shown}))


async def main(directory: str, mode: str) -> None:
    storage = FileStorage(directory)
    if mode == "too-big":
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.RLIM_INFINITY))
        await attempt("write", storage.write({"big": WriteItem(b'{"x":"' + b"y" * 10_000 + b'"}')}))
        await attempt(
            "write-existing", storage.write({"small": WriteItem(b'{"x":"' + b"y" * 10_000 + b'"}')})
        )
        await attempt("read", storage.read(["small"]))
    elif mode == "no-permission":
        await storage.read(["warm-up"])  # load the thread pool's modules while they are still readable
        if os.geteuid() == 0:
            os.setgid(65534)
            os.setuid(65534)
        await attempt("write", storage.write({"new": WriteItem(b'{"n":1}')}))
        await attempt("read", storage.read(["small"]))
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
