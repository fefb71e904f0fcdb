"""Commit throughput on one hot conversation under contention, against document-level last-writer-wins.

Run: .venv/bin/python benchmarks/bench_contention.py [--quick]

Shape: W writers (2, 8, 32) share ONE conversation, as separate bot instances would: each writer is an
asyncio task with its own StateManager and its own storage object over the same data (MemoryStorage
cannot be shared between objects, so there the writers share one). Each writer runs a fixed number of
turns; a turn loads the conversation document, increments ``count``, sets three other fields, awaits
once (``asyncio.sleep(0)``, where a handler would send its reply) and commits. turnstate runs with its
defaults (redelivery detection on, ``max_commit_attempts``, backoff) and only the conversation scope: a
conflicting commit is merged field by field and retried. A turn that gives up is counted (``give-ups``,
which must be 0) and not retried. After each row the stored count must equal writers x turns less the
give-ups.

The peer, on the same storages and schedule, is what the Bot Framework SDK and botas do: read the
document, change it, write it back unconditionally (``if_match="*"``). It never retries, and every
increment made between its read and its write by another writer is lost; the table shows how many. It
is bare msgspec with no SDK machinery, so its turns/s are an upper bound for those SDKs: where writers
rarely collide, ts/LWW mostly shows turnstate's per-turn cost; as they collide more, the cost of retries.

Columns: turns/s (all writers' turns over the row's wall time), retries and conflicts per turn (summed over
the writers' ``StateManager.stats``), give-ups, the worst single turn (its retries and its time from load
to the end of its commit), and whether the stored count is right.

Storages: MemoryStorage, FileStorage (fsync off, in a temporary directory), RedisStorage on a
redis-server this script starts on a free loopback port (skipped, with the reason, if redis-server is not
installed), and CosmosStorage on the Cosmos-compatible test server the Cosmos tests use (a fifth of the
turns: it is the slowest). Figures come from one run of each row; compare the ratio within one run, not
absolute figures across runs.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from turnstate import (
    CommitRetriesExhaustedError,
    FileStorage,
    MemoryStorage,
    StateManager,
    Storage,
    WriteItem,
)
from turnstate.keys import KeyScheme, ids_of
from turnstate.storage.base import ANY_ETAG

WRITERS = (2, 8, 32)
TOPICS = ("billing", "outage", "onboarding", "refund")

# A factory gives one writer its storage object; the row's data lives wherever the factory points.
StorageFactory = Callable[[], Storage]


def activity(conversation: str, writer: int, turn: int, tag: str) -> dict[str, Any]:
    """A Teams group-chat message from writer ``writer``'s user, with an id unique to this run."""
    return {
        "type": "message",
        "id": f"{tag}-w{writer}-{turn}",
        "channelId": "msteams",
        "serviceUrl": "https://smba.example/emea/",
        "conversation": {"id": conversation, "tenantId": "tenant-1", "isGroup": True},
        "from": {"id": f"29:user-{writer}", "name": f"User {writer}"},
        "recipient": {"id": "28:bot-1", "name": "IncidentBot"},
        "text": f"message {turn} from writer {writer}",
    }


@dataclass
class Row:
    writers: int
    turns: int
    seconds: float
    stats: Counter[str]
    final_count: int
    worst_retries: int = 0
    slowest: float = 0.0

    @property
    def turns_per_second(self) -> float:
        return self.turns / self.seconds


async def turnstate_row(
    factory: StorageFactory, writers: int, turns_each: int, conversation: str, tag: str
) -> Row:
    storages = [factory() for _ in range(writers)]
    managers = [StateManager(s, builtin_scopes=("conversation",)) for s in storages]

    worst_retries = 0
    slowest = 0.0

    async def writer(index: int) -> None:
        nonlocal worst_retries, slowest
        manager = managers[index]
        for i in range(turns_each):
            turn_activity = activity(conversation, index, i, tag)
            retries_before = manager.stats["retries"]
            turn_started = time.perf_counter()
            try:
                async with manager.turn(turn_activity) as state:
                    conv = state.conversation
                    conv.incr("count")
                    conv.set("last_speaker", turn_activity["from"])
                    conv.set("last_text", turn_activity["text"])
                    conv.set("topic", TOPICS[i % len(TOPICS)])
                    await asyncio.sleep(0)
            except CommitRetriesExhaustedError:
                pass  # counted in the manager's stats as gave_up
            slowest = max(slowest, time.perf_counter() - turn_started)
            worst_retries = max(worst_retries, manager.stats["retries"] - retries_before)

    try:
        await asyncio.gather(*(s.read(["warm-up"]) for s in storages))  # connections, files
        started = time.perf_counter()
        await asyncio.gather(*(writer(i) for i in range(writers)))
        seconds = time.perf_counter() - started
        stats: Counter[str] = Counter()
        for manager in managers:
            stats.update(manager.stats)
        checker = StateManager(storages[0], builtin_scopes=("conversation",))
        async with checker.turn(activity(conversation, 0, -1, f"{tag}-check")) as state:
            final = state.conversation.get("count", int, 0)
    finally:
        for s in storages:
            await s.aclose()
    return Row(writers, writers * turns_each, seconds, stats, final, worst_retries, slowest)


def conversation_key(scheme: KeyScheme, turn_activity: dict[str, Any]) -> str:
    """The key turnstate stores this activity's conversation document under."""
    key = scheme.conversation(ids_of(turn_activity)).key
    if key is None:
        raise ValueError(f"activity {turn_activity['id']!r} has no conversation id")
    return key


async def lww_row(factory: StorageFactory, writers: int, turns_each: int, conversation: str, tag: str) -> Row:
    storages = [factory() for _ in range(writers)]
    encode, decode = msgspec.json.encode, msgspec.json.decode
    scheme = KeyScheme()

    async def writer(index: int) -> None:
        storage = storages[index]
        for i in range(turns_each):
            turn_activity = activity(conversation, index, i, tag)
            key = conversation_key(scheme, turn_activity)
            found = await storage.read([key])
            stored = found.get(key)
            doc: dict[str, Any] = decode(stored.value) if stored is not None else {"v": 1, "data": {}}
            data: dict[str, Any] = doc["data"]
            data["count"] = data.get("count", 0) + 1
            data["last_speaker"] = turn_activity["from"]
            data["last_text"] = turn_activity["text"]
            data["topic"] = TOPICS[i % len(TOPICS)]
            await asyncio.sleep(0)
            await storage.write({key: WriteItem(encode(doc), if_match=ANY_ETAG)})

    try:
        await asyncio.gather(*(s.read(["warm-up"]) for s in storages))
        started = time.perf_counter()
        await asyncio.gather(*(writer(i) for i in range(writers)))
        seconds = time.perf_counter() - started
        key = conversation_key(scheme, activity(conversation, 0, 0, tag))
        found = await storages[0].read([key])
        final = decode(found[key].value)["data"]["count"] if key in found else 0
    finally:
        for s in storages:
            await s.aclose()
    return Row(writers, writers * turns_each, seconds, Counter(), final)


# Column widths; "|" separates writers, turnstate, the LWW peer and the ratio.
WIDTHS = (7, 5, 0, 7, 8, 9, 8, 16, 8, 0, 11, 10, 0, 7)


def line(*cells: str) -> str:
    parts = ["|" if width == 0 else f"{cell:>{width}}" for cell, width in zip(cells, WIDTHS, strict=True)]
    return "  " + " ".join(parts)


HEADER = "\n".join(
    (
        line("", "", "", "", "retries", "conflicts", "", "worst turn:", "", "", "LWW", "LWW", "", "turns/s"),
        line(
            "writers", "turns", "", "turns/s", "per turn", "per turn", "give-ups", "retries, time", "count",
            "", "turns/s", "lost", "", "ts/LWW",
        ),
    )
)  # fmt: skip


async def bench_storage(
    name: str, factory: StorageFactory, total_turns: int, run: str, mismatches: list[str]
) -> None:
    """Run every writer count on one storage and print its rows; record any count mismatch."""
    print(name)
    print(HEADER)
    for writers in WRITERS:
        turns_each = max(1, total_turns // writers)
        tag = f"{run}-{name.split()[0]}-{writers}"
        ours = await turnstate_row(factory, writers, turns_each, f"19:ts-{tag}@thread.v2", tag)
        peer = await lww_row(factory, writers, turns_each, f"19:lww-{tag}@thread.v2", tag)
        expected = ours.turns
        gave_up = ours.stats["gave_up"]
        matched = ours.final_count == expected - gave_up
        if not matched:
            mismatches.append(
                f"{name.split()[0]}, {writers} writers: count {ours.final_count} != {expected} - {gave_up}"
            )
        if gave_up:
            mismatches.append(f"{name.split()[0]}, {writers} writers: {gave_up} turns gave up")
        lost = peer.turns - peer.final_count
        print(
            line(
                str(writers),
                str(expected),
                "",
                f"{ours.turns_per_second:,.0f}",
                f"{ours.stats['retries'] / expected:.2f}",
                f"{ours.stats['conflicts'] / expected:.2f}",
                str(gave_up),
                f"{ours.worst_retries}, {ours.slowest * 1000:,.0f} ms",
                "OK" if matched else "MISMATCH",
                "",
                f"{peer.turns_per_second:,.0f}",
                f"{lost} ({lost / peer.turns:.0%})",
                "",
                f"{ours.turns_per_second / peer.turns_per_second:.2f}x",
            )
        )


class RedisProcess:
    """A throwaway redis-server on a free loopback port, without persistence."""

    def __init__(self, binary: str, workdir: Path) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        self.workdir = workdir
        self.process = subprocess.Popen(
            [
                *(binary, "--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no", "--dir", str(workdir)),
                *("--logfile", str(workdir / "redis.log")),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
        )

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"redis-server on port {self.port} exited with {self.process.returncode}; "
                    f"see {self.workdir / 'redis.log'}"
                )
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass  # not listening yet
            time.sleep(0.02)
        raise RuntimeError(f"redis-server on port {self.port} did not answer PING within {timeout}s")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


async def main_async(quick: bool, workdir: Path) -> int:
    total_turns = 480 if quick else 4000
    run = f"{time.time_ns():x}"
    print(
        f"One hot conversation; writers = asyncio tasks, each with its own StateManager and storage object. "
        f"{total_turns} turns per row, split evenly over the writers."
    )
    print(
        "A turn: load the conversation, incr('count'), set 3 fields, await once, commit (merge + retry on "
        "conflict)."
    )
    print("LWW peer: read, change, write back with if_match='*' (Bot Framework SDK, botas); never retries.")
    print("turns/s = all writers' turns / wall time; retries, conflicts summed over the writers' stats.\n")
    mismatches: list[str] = []
    memory = MemoryStorage()
    await bench_storage(
        "MemoryStorage (one object shared by all writers)", lambda: memory, total_turns, run, mismatches
    )
    files = workdir / "files"
    await bench_storage(
        "FileStorage (fsync off; one object per writer, same directory)",
        lambda: FileStorage(files, fsync=False),
        total_turns,
        run,
        mismatches,
    )
    binary = shutil.which("redis-server")
    if binary is None:
        print("RedisStorage: SKIPPED - redis-server is not on PATH (apt-get install -y redis-server)")
    else:
        from turnstate_redis import RedisStorage

        server = RedisProcess(binary, workdir)
        try:
            try:
                server.wait_ready()
            except RuntimeError as exc:
                raise SystemExit(f"RedisStorage: FAILED, could not start redis-server: {exc}") from exc
            url = server.url
            await bench_storage(
                f"RedisStorage (redis-server on port {server.port}; one client per writer)",
                lambda: RedisStorage(url, key_prefix="bench-contention:"),
                total_turns,
                run,
                mismatches,
            )
        finally:
            server.stop()
    await bench_cosmos(workdir, max(WRITERS) * (2 if quick else 5), run, mismatches)
    print("\nts/LWW = turnstate turns/s over LWW turns/s: the price of losing no update.")
    for mismatch in mismatches:
        print(f"MISMATCH: {mismatch} (the stored count must equal writers x turns)")
    return 1 if mismatches else 0


async def bench_cosmos(workdir: Path, total_turns: int, run: str, mismatches: list[str]) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "storages" / "cosmos" / "tests"))
    from cosmos_test_server import EMULATOR_KEY, CosmosTestServer, ServerError
    from turnstate_cosmos import CosmosStorage

    server = CosmosTestServer(workdir / "cosmos")
    try:
        server.start()
    except ServerError as exc:
        server.stop()
        raise SystemExit(f"CosmosStorage: FAILED, could not start the Cosmos test server: {exc}") from exc
    try:
        endpoint = server.endpoint
        await bench_storage(
            f"CosmosStorage (Cosmos test server on {endpoint}; one client per writer)",
            lambda: CosmosStorage(endpoint, EMULATOR_KEY, "bench", "contention"),
            total_turns,
            run,
            mismatches,
        )
    finally:
        server.stop()


def main() -> None:
    quick = "--quick" in sys.argv
    with tempfile.TemporaryDirectory(prefix="bench-contention-") as workdir:
        code = asyncio.run(main_async(quick, Path(workdir)))
    sys.exit(code)


if __name__ == "__main__":
    main()
