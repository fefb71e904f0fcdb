"""RedisStorage turns per second, against raw redis-py sending the same commands, measured in the same run.

Run: .venv/bin/python benchmarks/bench_redis.py [--quick]

Starts its own redis-server on a free loopback port (no persistence) and stops it at the end.

One turn = read a conversation and a user document (about 300 bytes each) in one round trip, then write
both back with compare-and-set on the ETags just read, in one round trip. RedisStorage does it with
``read`` and ``write``. The peer is hand-written redis-py: a non-transactional pipeline of two GETs, the
stored header split off by hand, then a pipeline of two EVALSHAs of the same compare-and-set script, on a
client with the same timeouts. N conversations run concurrently (N = 1, 8, 64), each with its own
documents, so no turn conflicts.

Figures are the best of several alternating rounds; compare the ratio within one run, not absolute
figures across runs. Target: RedisStorage at least 70% of raw redis-py.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis
import redis.asyncio
from throughput import Turn, turns_per_second  # benchmarks/throughput.py, beside this script
from turnstate_redis import RedisStorage
from turnstate_redis._layout import CAS_SCRIPT, CAS_SHA

from turnstate.storage.base import WriteItem

TARGET = 0.70
TIMEOUT = 5.0
DOCUMENT = (
    b'{"v":1,"data":{'
    + b",".join(b'"field%d":"value-%d-abcdefghijklmnop"' % (i, i) for i in range(8))
    + b"}}"
)


def start_server(workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not on PATH: apt-get install -y redis-server")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        cwd=workdir,
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with redis.Redis(port=port, socket_timeout=0.5) as client:
                client.ping()
            return process, port
        except redis.ConnectionError:
            time.sleep(0.02)
    process.kill()
    raise SystemExit(f"redis-server on port {port} did not start")


def storage_turn(storage: RedisStorage) -> Turn:
    async def turn(conversation: int) -> None:
        keys = [f"conversation/{conversation}", f"user/{conversation}"]
        found = await storage.read(keys)
        await storage.write(
            {key: WriteItem(DOCUMENT, if_match=found[key].etag if key in found else None) for key in keys}
        )

    return turn


def raw_turn(client: redis.asyncio.Redis) -> Turn:
    async def turn(conversation: int) -> None:
        names = [f"raw:conversation/{conversation}".encode(), f"raw:user/{conversation}".encode()]
        pipe = client.pipeline(transaction=False)
        for name in names:
            pipe.get(name)
        stored = await pipe.execute()
        pipe = client.pipeline(transaction=False)
        for name, raw in zip(names, stored, strict=True):
            etag = os.urandom(12).hex()
            packed = b"".join((b"ts1|", etag.encode(), b"|", DOCUMENT))
            if raw is None:
                pipe.evalsha(CAS_SHA, 1, name, "c", b"", packed, b"")
            else:
                current = raw[4 : raw.index(b"|", 4)]
                pipe.evalsha(CAS_SHA, 1, name, "m", current, packed, b"")
        results = await pipe.execute()
        if results != [1, 1]:
            raise SystemExit(f"raw compare-and-set failed: {results}")

    return turn


async def bench(port: int, seconds: float, rounds: int) -> bool:
    url = f"redis://127.0.0.1:{port}"
    storage = RedisStorage(url, key_prefix="bench:")
    client = redis.asyncio.Redis.from_url(url, socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT)
    await client.script_load(CAS_SCRIPT)
    ours, raw = storage_turn(storage), raw_turn(client)
    print("one turn = read 2 documents in one round trip + compare-and-set write of both in one round trip")
    header = f"{'conversations':>13} {'RedisStorage turns/s':>21} {'raw redis-py turns/s':>21}"
    print(f"  {header} {'ours / raw':>11}")
    met = True
    try:
        for conversations in (1, 8, 64):
            await ours(0)  # warm up: connections, script, documents
            await raw(0)
            best_ours = best_raw = 0.0
            for _ in range(rounds):
                best_ours = max(best_ours, await turns_per_second(ours, conversations, seconds))
                best_raw = max(best_raw, await turns_per_second(raw, conversations, seconds))
            ratio = best_ours / best_raw
            met = met and ratio >= TARGET
            print(f"  {conversations:>13} {best_ours:>21,.0f} {best_raw:>21,.0f} {ratio:>10.0%}")
    finally:
        await storage.aclose()
        await client.aclose()
    print(f"  target: RedisStorage at least {TARGET:.0%} of raw redis-py -> {'met' if met else 'MISSED'}")
    return met


def main() -> None:
    quick = "--quick" in sys.argv
    seconds, rounds = (0.4, 2) if quick else (1.5, 3)
    with tempfile.TemporaryDirectory() as workdir:
        process, port = start_server(Path(workdir))
        try:
            met = asyncio.run(bench(port, seconds, rounds))
        finally:
            process.terminate()
            process.wait(timeout=10)
    sys.exit(0 if met else 1)


if __name__ == "__main__":
    main()
