"""The fault sweep's contract with real SIGKILLs: a bot process killed at a failure point of its turn,
then the activity redelivered to another instance, on the storages several processes share."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.activities import message
from tests.support.backends import Backend, file_backend, redis_backend
from tests.support.faults import FaultyStorage, Instance, Schedule, check

WORKER = Path(__file__).parent / "support" / "fault_worker.py"
KILL_POINTS = [
    ("between-writes", 1, False),
    ("between-writes", 2, False),
    ("between-writes", 1, True),
    ("before-ack", 1, False),
    ("before-ack", 1, True),
    ("after-checkpoint", 1, True),
    ("handler", 1, True),
]


@pytest.fixture(params=["file", "redis"])
async def killable(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    """FileStorage and Redis, shared by the killed process and the test."""
    if request.param == "file":
        backend = file_backend(tmp_path / "state")
    else:
        backend = redis_backend(request.getfixturevalue("scenario_redis").url, cluster=False)
    yield backend
    await backend.close_all()


@pytest.mark.parametrize(("point", "cut", "checkpoint"), KILL_POINTS)
async def test_a_process_killed_at_each_point_leaves_nothing_lost_or_doubled(
    killable: Backend, point: str, cut: int, checkpoint: bool
) -> None:
    backend = killable
    conversation = f"kill-{point}-{cut}-{int(checkpoint)}"
    with subprocess.Popen(
        [sys.executable, str(WORKER), json.dumps(backend.spec), conversation, "act-1", point, str(cut),
         "1" if checkpoint else "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(WORKER.parents[2])},
    ) as worker:  # fmt: skip
        assert worker.stdout is not None and worker.stderr is not None
        line = worker.stdout.readline().strip()
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=30)
        assert line == f"at {point}", (line, worker.stderr.read())
    instance = Instance(FaultyStorage(backend.open()))
    activity = message(conversation=conversation, user=f"29:{conversation}", activity_id="act-1")
    outcome = await instance.deliver(activity, "turn", checkpoint)
    assert outcome in ("done", "duplicate"), outcome
    assert await instance.deliver(activity, "turn", checkpoint) == "duplicate"
    schedule = Schedule(0, point, checkpoint, "turn", 1, False, False, cut, 1)
    anomalies = await check(backend.open(), message(conversation=conversation, user=f"29:{conversation}"),
                            ["act-1"], schedule)  # fmt: skip
    assert not anomalies, anomalies
