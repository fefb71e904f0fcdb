"""BlobStorage turns per second, requests and latency per turn, against the raw azure-storage-blob async SDK
doing the same operations, same run.

Run: .venv/bin/python benchmarks/bench_blob.py [--quick]

Starts Azurite (the emulator the Blob storage tests use, pinned under storages/blob/testserver) on a free
loopback port with its data in a temporary directory, and stops it at the end. Azurite is local, so the
figures show the client side (SDK plus storage) and the emulator, not Azure latency: on a real account
every round trip adds milliseconds and the ratio moves towards 1.

One turn = download a conversation and a user blob (both at once), then upload both with If-Match on the
ETags just read (both at once). BlobStorage does it with ``read`` and ``write``. The peer is the SDK used
by hand: two ``download_blob`` + ``readall`` gathered, then two ``upload_blob`` calls with
``MatchConditions.IfNotModified``, the same metadata and content type, gathered. N conversations run
concurrently (N = 1, 8, 64), each with its own blobs, so no turn conflicts.

Requests per turn are counted by a ``raw_request_hook`` on both clients (every HTTP request sent). Latency is
the time of one whole turn with one conversation at a time (median and 99th percentile). Figures are the
best of several alternating rounds; compare the ratio within one run, not absolute figures across runs.
Azurite (one node process persisting every blob to disk) is the bottleneck here, and on a busy machine
turns/s swing from round to round; the client CPU per turn (this process's CPU time divided by the turns
it ran) is the steadier measure of what the storage adds to the SDK.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from azure.core import MatchConditions
from azure.core.pipeline import PipelineRequest
from azure.storage.blob import ContentSettings
from azure.storage.blob.aio import BlobServiceClient, ContainerClient
from throughput import Turn, turns_per_second  # benchmarks/throughput.py, beside this script
from turnstate_blob import BlobStorage
from turnstate_blob._names import blob_name

from turnstate.storage.base import WriteItem

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "storages" / "blob" / "tests"))
from azurite_server import Azurite, ServerError  # the tests' emulator helper, found through sys.path

CONTAINER = "bench"
DOCUMENT = (
    b'{"v":1,"data":{'
    + b",".join(b'"field%d":"value-%d-abcdefghijklmnop"' % (i, i) for i in range(8))
    + b"}}"
)
METADATA = {"turnstate": "1"}
JSON = ContentSettings(content_type="application/json")
LEVELS = (1, 8, 64)


class RequestCounter:
    """Counts every HTTP request a client sends (the SDK's ``raw_request_hook``, retries included)."""

    def __init__(self) -> None:
        self.requests = 0

    def __call__(self, request: PipelineRequest[Any]) -> None:
        self.requests += 1


def keys_of(conversation: int, prefix: str) -> list[str]:
    return [f"{prefix}conversation/{conversation}", f"{prefix}user/{conversation}"]


class Tally:
    """Turns run by one side, and this process's CPU time spent running them."""

    def __init__(self) -> None:
        self.turns = 0
        self.cpu_seconds = 0.0


def counted(turn: Turn, tally: Tally) -> Turn:
    async def run(conversation: int) -> None:
        await turn(conversation)
        tally.turns += 1

    return run


async def timed(tally: Tally, turn: Turn, conversations: int, seconds: float) -> float:
    """turns_per_second, adding this process's CPU time to the tally."""
    started = time.process_time()
    rate = await turns_per_second(counted(turn, tally), conversations, seconds)
    tally.cpu_seconds += time.process_time() - started
    return rate


def storage_turn(storage: BlobStorage) -> Turn:
    async def turn(conversation: int) -> None:
        keys = keys_of(conversation, "ours/")
        found = await storage.read(keys)
        await storage.write({key: WriteItem(DOCUMENT, if_match=found[key].etag) for key in keys})

    return turn


def raw_turn(container: ContainerClient) -> Turn:
    async def download(name: str) -> tuple[bytes, str]:
        downloaded = await container.download_blob(name)
        return await downloaded.readall(), downloaded.properties.etag

    async def upload(name: str, etag: str) -> None:
        await container.get_blob_client(name).upload_blob(
            DOCUMENT,
            length=len(DOCUMENT),
            overwrite=True,
            metadata=METADATA,
            content_settings=JSON,
            etag=etag,
            match_condition=MatchConditions.IfNotModified,
        )

    async def turn(conversation: int) -> None:
        names = [blob_name(key) for key in keys_of(conversation, "raw/")]
        found = await asyncio.gather(*(download(name) for name in names))
        await asyncio.gather(*(upload(name, etag) for name, (_, etag) in zip(names, found, strict=True)))

    return turn


async def latencies(turn: Turn, count: int) -> list[float]:
    """Seconds per turn, one turn at a time."""
    times = []
    for _ in range(count):
        started = time.perf_counter()
        await turn(0)
        times.append(time.perf_counter() - started)
    return times


def requests_per_turn(counter: RequestCounter, turn: Turn) -> Any:
    async def measure(turns: int) -> float:
        before = counter.requests
        for _ in range(turns):
            await turn(1)
        return (counter.requests - before) / turns

    return measure


async def bench(azurite: Azurite, seconds: float, rounds: int, samples: int) -> None:
    ours_counter, raw_counter = RequestCounter(), RequestCounter()
    storage = BlobStorage(
        CONTAINER,
        connection_string=azurite.connection_string,
        create_container=True,
        raw_request_hook=ours_counter,
    )
    service = BlobServiceClient.from_connection_string(
        azurite.connection_string, raw_request_hook=raw_counter
    )
    try:
        await storage.write(
            {key: WriteItem(DOCUMENT) for n in range(max(LEVELS)) for key in keys_of(n, "ours/")}
        )
        container = service.get_container_client(CONTAINER)
        for n in range(max(LEVELS)):
            for key in keys_of(n, "raw/"):
                await container.upload_blob(blob_name(key), DOCUMENT, overwrite=True, metadata=METADATA)
        ours, raw = storage_turn(storage), raw_turn(container)
        await ours(0)  # warm up: connections
        await raw(0)

        print(f"Azurite on {azurite.endpoint} (HTTP, pooled connections; a local emulator: client overhead,")
        print("  not Azure latency)")
        print("one turn = 2 blob downloads at once + 2 uploads with If-Match on their ETags at once")
        ours_requests = await requests_per_turn(ours_counter, ours)(20)
        raw_requests = await requests_per_turn(raw_counter, raw)(20)
        print(
            f"requests per turn: BlobStorage {ours_requests:.2f}, raw azure-storage-blob {raw_requests:.2f}"
        )

        ours_times: list[float] = []
        raw_times: list[float] = []
        for _ in range(rounds):
            ours_times += await latencies(ours, samples)
            raw_times += await latencies(raw, samples)

        def shown(times: list[float]) -> str:
            ordered = sorted(times)
            p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
            return f"median {statistics.median(ordered) * 1e3:6.2f} ms, p99 {p99 * 1e3:6.2f} ms"

        print("latency per turn, one conversation at a time:")
        print(f"  {'BlobStorage':>22}: {shown(ours_times)}")
        print(f"  {'raw azure-storage-blob':>22}: {shown(raw_times)}")
        ratio = statistics.median(raw_times) / statistics.median(ours_times)
        print(f"  {'raw / ours (median)':>22}: {ratio:.0%}")

        print(
            f"  {'conversations':>13} {'BlobStorage turns/s':>20} {'raw azure-storage-blob turns/s':>31}"
            f" {'ours / raw':>11}"
        )
        ours_tally, raw_tally = Tally(), Tally()
        for conversations in LEVELS:
            best_ours = best_raw = 0.0
            for _ in range(rounds):
                best_ours = max(best_ours, await timed(ours_tally, ours, conversations, seconds))
                best_raw = max(best_raw, await timed(raw_tally, raw, conversations, seconds))
            print(
                f"  {conversations:>13} {best_ours:>20,.0f} {best_raw:>31,.0f} {best_ours / best_raw:>10.0%}"
            )
        ours_cpu = ours_tally.cpu_seconds / ours_tally.turns * 1e6
        raw_cpu = raw_tally.cpu_seconds / raw_tally.turns * 1e6
        print("client CPU per turn (this process's CPU time over the runs above, divided by the turns):")
        print(
            f"  BlobStorage {ours_cpu:,.0f} µs, raw azure-storage-blob {raw_cpu:,.0f} µs,"
            f" ours / raw {ours_cpu / raw_cpu:.0%}"
        )
    finally:
        await storage.aclose()
        await service.close()


def main() -> None:
    quick = "--quick" in sys.argv
    seconds, rounds, samples = (0.5, 2, 50) if quick else (2.0, 5, 200)
    with tempfile.TemporaryDirectory() as workdir:
        azurite = Azurite(Path(workdir))
        try:
            azurite.start()
        except ServerError as exc:
            azurite.stop()
            raise SystemExit(f"could not start Azurite: {exc}") from exc
        try:
            asyncio.run(bench(azurite, seconds, rounds, samples))
        finally:
            azurite.stop()


if __name__ == "__main__":
    main()
