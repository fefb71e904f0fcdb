"""Compare-and-set holds across processes sharing one FileStorage directory."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

from turnstate.storage.file import FileStorage

HERE = Path(__file__).parents[1] / "support"
PROCESSES = 3
COUNT = 100


def run_siblings(tmp_path: Path, mode: str) -> list[dict[str, int]]:
    directory, go = tmp_path / "state", tmp_path / "go"
    FileStorage(directory)
    env = {**os.environ, "PYTHONPATH": str(HERE.parents[1])}
    script = str(HERE / "file_counter.py")
    procs = [
        subprocess.Popen(
            [sys.executable, script, str(directory), mode, str(i), str(COUNT), str(go)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for i in range(PROCESSES)
    ]
    try:
        go.touch()
        outputs = [proc.communicate(timeout=120) for proc in procs]
    finally:
        for proc in procs:  # a failed or hung sibling must not outlive the test
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    for proc, (_, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err.decode()
    return [json.loads(out) for out, _ in outputs]


def read(tmp_path: Path, key: str) -> int:
    found = asyncio.run(FileStorage(tmp_path / "state").read([key]))
    return int(json.loads(found[key].value)["n"])


def test_processes_incrementing_one_counter_lose_no_update(tmp_path: Path) -> None:
    results = run_siblings(tmp_path, "counter")
    assert read(tmp_path, "counter") == PROCESSES * COUNT
    assert sum(r["conflicts"] for r in results) > 0, "the processes never raced; the test proved nothing"


def test_batches_in_opposite_key_orders_neither_deadlock_nor_lose_updates(tmp_path: Path) -> None:
    results = run_siblings(tmp_path, "pair")
    assert read(tmp_path, "pair/a") == PROCESSES * COUNT
    assert read(tmp_path, "pair/b") == PROCESSES * COUNT
    assert sum(r["conflicts"] for r in results) > 0


def test_create_only_and_delete_make_a_cross_process_mutex(tmp_path: Path) -> None:
    """Lock files come and go with the key; whoever waited on a removed one must not get in too."""
    (tmp_path / "tally").write_text("0")
    results = run_siblings(tmp_path, "mutex")
    assert sum(r["intruders"] for r in results) == 0
    assert int((tmp_path / "tally").read_text()) == PROCESSES * COUNT
    assert sum(r["conflicts"] for r in results) > 0
    assert os.listdir(tmp_path / "state" / ".locks") == []
