"""FileStorage survives SIGKILL at any moment: every file is a whole committed document, never a torn one."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.file_writer import COUNTER, own_keys
from turnstate.storage.base import WriteItem
from turnstate.storage.file import FileStorage, encode_key

HERE = Path(__file__).parents[1] / "support"
ENV = {**os.environ, "PYTHONPATH": str(HERE.parents[1])}
WRITERS = 3
KILLS = 36


@dataclass
class Slot:
    """One writer identity, run by a succession of processes (generations), each killed in turn."""

    writer: int
    logs: list[Path] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None

    def spawn(self, directory: Path, logs: Path) -> None:
        log = logs / f"writer{self.writer}-gen{len(self.logs)}.log"
        log.touch()
        self.logs.append(log)
        with open(log.with_suffix(".err"), "wb") as stderr:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    str(HERE / "file_writer.py"),
                    str(directory),
                    str(self.writer),
                    str(len(self.logs)),
                    str(log),
                ],
                env=ENV,
                stderr=stderr,
            )

    def stderr(self) -> str:
        return self.logs[-1].with_suffix(".err").read_text()

    def wait_until_writing(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + 30
        while b'"ready"' not in self.logs[-1].read_bytes():
            assert self.process.poll() is None, f"writer {self.writer} exited early: {self.stderr()}"
            assert time.monotonic() < deadline, f"writer {self.writer} never became ready"
            time.sleep(0.005)

    def kill(self) -> None:
        assert self.process is not None
        exited = self.process.poll()
        assert exited is None, f"writer {self.writer} died on its own ({exited}): {self.stderr()}"
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def generations(self) -> Iterator[list[dict[str, object]]]:
        for log in self.logs:
            # One write(2) per line, but a kill can still cut a multi-page write short: only the last line
            # of a killed writer's log may be partial. Its event never completed, so it is dropped; a
            # "try" logged before it still allows the document being written.
            lines = log.read_bytes().splitlines()
            events = [json.loads(line) for line in lines[:-1]]
            if lines:
                with contextlib.suppress(json.JSONDecodeError):
                    events.append(json.loads(lines[-1]))
            yield events


def test_sigkill_at_random_moments_leaves_only_committed_documents(tmp_path: Path) -> None:
    directory, logs = tmp_path / "state", tmp_path / "logs"
    logs.mkdir()
    FileStorage(directory)
    slots = [Slot(w) for w in range(WRITERS)]
    for slot in slots:
        slot.spawn(directory, logs)
    rng = random.Random()
    try:
        for _ in range(KILLS):
            slot = rng.choice(slots)
            slot.wait_until_writing()
            time.sleep(rng.uniform(0.0, 0.12))
            slot.kill()
            slot.spawn(directory, logs)
        for slot in slots:
            slot.wait_until_writing()
            time.sleep(rng.uniform(0.0, 0.05))
            slot.kill()
    finally:
        for slot in slots:
            if slot.process is not None and slot.process.poll() is None:
                slot.process.kill()
                slot.process.wait()

    # What each key may hold: its last confirmed document, or one tried after it by a process since killed.
    allowed: dict[str, set[str]] = {}
    counter_ok: list[int] = []
    in_flight = confirmed = 0
    for slot in slots:
        for events in slot.generations():
            in_flight += bool(events) and events[-1]["ev"] in ("try", "try-counter")
            for event in events:
                assert event["ev"] != "error", event
                docs: dict[str, str] = event.get("docs", {})  # type: ignore[assignment]
                if event["ev"] == "try":
                    for key, doc in docs.items():
                        allowed.setdefault(key, set()).add(doc)
                elif event["ev"] == "ok":
                    confirmed += 1
                    allowed.update((key, {doc}) for key, doc in docs.items())
                elif event["ev"] == "ok-counter":
                    counter_ok.append(event["n"])  # type: ignore[arg-type]
    assert confirmed >= KILLS, "the writers hardly committed anything; the test proved little"

    # Every file parses; temporary files are the only other entries.
    names = {p.name for p in directory.iterdir()}
    temps = {n for n in names if n.startswith(".tmp-")}
    documents = names - temps - {".locks"}
    expected_keys = {*(key for w in range(WRITERS) for key in own_keys(w)), COUNTER}
    assert set(allowed) == expected_keys - {COUNTER}
    assert documents == {encode_key(k) for k in expected_keys}
    for name in documents:
        envelope = json.loads((directory / name).read_bytes())
        assert encode_key(envelope["key"]) == name

    storage = FileStorage(directory)

    async def check() -> None:
        found = await storage.read(list(expected_keys))
        assert set(found) == expected_keys
        for key, docs in allowed.items():
            assert found[key].value.decode() in docs, f"{key!r} holds a document that was never committed"
        counter = json.loads(found[COUNTER].value)["n"]
        assert len(counter_ok) == len(set(counter_ok)), "two processes committed the same counter value"
        # Each commit adds exactly one; only a killed process can have committed without logging "ok".
        assert max(counter_ok) <= counter
        assert len(counter_ok) <= counter <= len(counter_ok) + KILLS + WRITERS
        assert {k async for k in storage.list_keys()} == expected_keys

        # Leftover temporary files from the kills are removed once stale, and only then.
        assert await storage.purge_expired() == 0
        old = time.time() - 120
        for name in temps:
            os.utime(directory / name, (old, old))
        assert await storage.purge_expired() == len(temps)
        assert not [n for n in os.listdir(directory) if n.startswith(".tmp-")]
        assert set(os.listdir(directory / ".locks")) <= documents

    assert in_flight >= 5, "almost no kill landed during a write; the test proved little"
    asyncio.run(check())


@pytest.mark.parametrize(
    ("point", "a", "b", "temps"),
    [
        ("mid-temp-write", b'{"old":1}', b'{"old":1}', 1),
        ("before-rename", b'{"old":1}', b'{"old":1}', 2),
        ("between-renames", b'{"new":1}', b'{"old":1}', 1),
        ("after-renames", b'{"new":1}', b'{"new":1}', 0),
    ],
)
async def test_kill_at_each_step_of_a_write(
    tmp_path: Path, point: str, a: bytes, b: bytes, temps: int
) -> None:
    """Each file is whole, old or new; a batch is not atomic across a crash (hence atomic_batch=False)."""
    storage = FileStorage(tmp_path)
    await storage.write({"a": WriteItem(b'{"old":1}'), "b": WriteItem(b'{"old":1}')})
    done = subprocess.run(
        [sys.executable, str(HERE / "file_crashpoint.py"), str(tmp_path), point],
        env=ENV,
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()
    found = await storage.read(["a", "b"])
    assert (found["a"].value, found["b"].value) == (a, b)
    assert {k async for k in storage.list_keys()} == {"a", "b"}
    leftovers = [n for n in os.listdir(tmp_path) if n.startswith(".tmp-")]
    assert len(leftovers) == temps
    assert await storage.purge_expired() == 0  # fresh: may belong to a write still running elsewhere
    old = time.time() - 120
    for name in leftovers:
        os.utime(tmp_path / name, (old, old))
    assert await storage.purge_expired() == temps
    assert sorted(os.listdir(tmp_path)) == [".locks", "a", "b"]
    await storage.write({"a": WriteItem(b'{"after":1}', if_match=found["a"].etag)})
