"""Several bot processes share one counter through RedisStorage: compare-and-set loses no update."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from redis_test_servers import RedisClusterNodes, RedisServer
from turnstate_redis import RedisStorage

WORKER = Path(__file__).with_name("redis_counter_worker.py")
PROCESSES = 4
INCREMENTS = 150


def _run_workers(url: str, mode: str, key: str) -> int:
    workers = [
        subprocess.Popen(
            [sys.executable, str(WORKER), url, mode, key, str(INCREMENTS)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(PROCESSES)
    ]
    for worker in workers:
        assert worker.stdout is not None
        ready = worker.stdout.readline()
        assert ready == b"ready\n", ready + (worker.stderr.read() if worker.stderr else b"")
    for worker in workers:
        assert worker.stdin is not None
        worker.stdin.write(b"go\n")
        worker.stdin.flush()
    conflicts = 0
    for worker in workers:
        out, err = worker.communicate(timeout=120)
        assert worker.returncode == 0, err.decode(errors="replace")
        conflicts += json.loads(out)["conflicts"]
    return conflicts


async def _final_count(url: str, key: str, *, cluster: bool) -> int:
    async with RedisStorage(url, cluster=cluster, key_prefix="multiprocess-test:") as storage:
        return int(json.loads((await storage.read([key]))[key].value)["n"])


@pytest.mark.parametrize("mode", ["standalone", "cluster"])
async def test_processes_incrementing_one_counter_lose_no_update(
    mode: str, redis_server: RedisServer, redis_cluster: RedisClusterNodes
) -> None:
    url = redis_cluster.url if mode == "cluster" else redis_server.url
    key = f"counter/{uuid.uuid4().hex}"
    conflicts = await asyncio.to_thread(_run_workers, url, mode, key)
    count = await _final_count(url, key, cluster=mode == "cluster")
    assert count == PROCESSES * INCREMENTS, (
        f"lost {PROCESSES * INCREMENTS - count} updates ({conflicts} conflicts)"
    )
    # The workers started together on purpose: without lost races the test would prove nothing.
    assert conflicts > 0
