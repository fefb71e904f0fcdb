"""FileStorage cost per turn, against a naive in-place JSON file store measured in the same run.

Run: .venv/bin/python benchmarks/bench_file.py [--quick]

One turn = read 2 documents (a conversation and a user document of 10 fields each), change 2 fields in
each, write both back. FileStorage does it as one read call and one write call with ETag preconditions
(atomic replace; with fsync on, durable when the write returns). The peer is what non-atomic file stores
do: per document ``json.load`` from its file, then ``open(path, "w")`` + ``json.dump`` in place (no lock,
no ETag, no fsync, torn by a crash mid-write), called directly on the event loop thread.

Figures are the median of several rounds on a temporary directory; compare ratios within one run, not
absolute times across runs (fsync cost depends heavily on the disk).
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from turnstate.storage.base import WriteItem
from turnstate.storage.file import FileStorage

KEYS = ("conversation/msteams/19:a1B2c3D4e5@thread.tacv2", "user/msteams/29:1AbCdEfGhIjKlMnOpQrStUv")


def document(i: int) -> dict[str, Any]:
    return {
        "v": 1,
        "data": {
            "name": f"User {i}",
            "email": f"user{i}@example.com",
            "locale": "en-US",
            "turns": 0,
            "last_seen": "2026-11-21T10:00:00Z",
            "topic": "billing",
            "flags": ["beta", "tester"],
            "prefs": {"theme": "dark", "tz": "Europe/Berlin"},
            "score": 12.5,
            "open_ticket": None,
        },
    }


def turn_count_and_rounds(quick: bool) -> tuple[int, int, int]:
    """(turns per round with fsync, turns per round without, rounds)."""
    return (60, 400, 3) if quick else (300, 2000, 5)


async def file_storage_turns(storage: FileStorage, turns: int) -> float:
    encode, decode = msgspec.json.encode, msgspec.json.decode
    start = time.perf_counter()
    for n in range(turns):
        found = await storage.read(KEYS)
        items = {}
        for key in KEYS:
            doc = decode(found[key].value)
            doc["data"]["turns"] = n
            doc["data"]["last_seen"] = f"t{n}"
            items[key] = WriteItem(encode(doc), if_match=found[key].etag)
        await storage.write(items)
    return (time.perf_counter() - start) / turns * 1e6


async def naive_turns(paths: list[str], turns: int) -> float:
    start = time.perf_counter()
    for n in range(turns):
        docs = []
        for path in paths:
            with open(path) as file:
                docs.append(json.load(file))
        for path, doc in zip(paths, docs, strict=True):
            doc["data"]["turns"] = n
            doc["data"]["last_seen"] = f"t{n}"
            with open(path, "w") as file:
                json.dump(doc, file)
    return (time.perf_counter() - start) / turns * 1e6


async def median_us(run: Callable[[int], Awaitable[float]], turns: int, rounds: int) -> float:
    await run(max(turns // 10, 5))  # warm up caches and the thread pool
    return statistics.median([await run(turns) for _ in range(rounds)])


async def measure(root: str, quick: bool) -> dict[str, float]:
    turns_fsync, turns_plain, rounds = turn_count_and_rounds(quick)
    results: dict[str, float] = {}
    naive_dir = os.path.join(root, "naive")
    os.mkdir(naive_dir)
    paths = [os.path.join(naive_dir, f"doc{i}.json") for i in range(len(KEYS))]
    for i, path in enumerate(paths):
        with open(path, "w") as file:
            json.dump(document(i), file)

    async def peer(turns: int) -> float:
        return await naive_turns(paths, turns)

    results["naive"] = await median_us(peer, turns_plain, rounds)
    for label, fsync, turns in (("fsync on", True, turns_fsync), ("fsync off", False, turns_plain)):
        storage = FileStorage(os.path.join(root, label.replace(" ", "-")), fsync=fsync)
        await storage.write({key: WriteItem(msgspec.json.encode(document(i))) for i, key in enumerate(KEYS)})

        async def ours(turns: int, storage: FileStorage = storage) -> float:
            return await file_storage_turns(storage, turns)

        results[label] = await median_us(ours, turns, rounds)
    return results


async def main(quick: bool) -> None:
    places = [("disk (current directory)", os.getcwd())]
    if os.path.isdir("/dev/shm"):
        places.append(("memory (/dev/shm): software overhead only", "/dev/shm"))
    print("file storage: one turn = read 2 docs + write 2 docs (10 fields each), microseconds per turn")
    for title, base in places:
        with tempfile.TemporaryDirectory(prefix="bench-file-", dir=base) as root:
            results = await measure(root, quick)
        naive = results.pop("naive")
        print(f"on {title}")
        print(f"  {'store':<44} {'us/turn':>9} {'vs naive':>9}")
        print(f"  {'naive in-place json.dump (peer, not atomic)':<44} {naive:>9.0f} {1.0:>8.1f}x")
        for label, us in results.items():
            print(f"  {'FileStorage, ' + label:<44} {us:>9.0f} {us / naive:>8.1f}x")
    _, _, rounds = turn_count_and_rounds(quick)
    print(f"median of {rounds} rounds each")


if __name__ == "__main__":
    asyncio.run(main("--quick" in sys.argv[1:]))
