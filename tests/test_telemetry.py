"""OpenTelemetry: spans for a turn's load, commit and storage calls, metrics from the stats; keys only
when allowed, values never."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader, NumberDataPoint
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from tests.support.activities import message
from turnstate import CommitRetriesExhaustedError, FileStorage, MemoryStorage, StateManager, Storage
from turnstate.telemetry import Telemetry

SECRET = "value-that-must-not-be-exported"
CONVERSATION = "19:conv-telemetry@thread.v2"


class Exported:
    """A Telemetry on SDK providers that keep what they export in memory."""

    def __init__(self, *, record_keys: bool = False) -> None:
        self.spans_out = InMemorySpanExporter()
        tracer_provider = TracerProvider()
        tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans_out))
        self.reader = InMemoryMetricReader()
        meter_provider = MeterProvider(metric_readers=[self.reader])
        self.providers = {"tracer_provider": tracer_provider, "meter_provider": meter_provider}
        self.telemetry = Telemetry(
            tracer_provider=tracer_provider, meter_provider=meter_provider, record_keys=record_keys
        )

    def another(self) -> Telemetry:
        """A second Telemetry on the same providers."""
        return Telemetry(**self.providers)  # type: ignore[arg-type]

    def spans(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.spans_out.get_finished_spans() if s.name == name]

    def metrics(self) -> dict[str, list[Any]]:
        data = self.reader.get_metrics_data()
        assert data is not None
        return {
            metric.name: list(metric.data.data_points)
            for resource in data.resource_metrics
            for scope in resource.scope_metrics
            for metric in scope.metrics
        }

    def counter(self, name: str) -> int | float:
        points = self.metrics()[name]
        assert all(isinstance(p, NumberDataPoint) for p in points)
        return sum(p.value for p in points)

    def exported_text(self) -> str:
        """Every attribute (of spans, their events and metric points) and status text, as one string."""
        parts: list[str] = []
        for span in self.spans_out.get_finished_spans():
            parts += [repr(dict(span.attributes or {})), repr(span.status.description)]
            parts += [repr(dict(event.attributes or {})) + event.name for event in span.events]
        parts += [repr(dict(p.attributes or {})) for points in self.metrics().values() for p in points]
        return "\n".join(parts)


@pytest.fixture(params=["memory", "file"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    yield MemoryStorage() if request.param == "memory" else FileStorage(tmp_path / "state", fsync=False)


async def race(managers: list[StateManager]) -> None:
    """Two turns on one conversation, both loaded before either commits: one conflicts, merges and retries."""
    both_loaded = asyncio.Barrier(len(managers))

    async def turn(manager: StateManager, field: str) -> None:
        async with manager.turn(message(conversation=CONVERSATION)) as state:
            await both_loaded.wait()
            state.conversation.set(field, SECRET)

    await asyncio.gather(*(turn(m, f"field{i}") for i, m in enumerate(managers)))


async def test_a_conflicting_turn_is_traced_and_counted(storage: Storage) -> None:
    exported = Exported()
    # one Telemetry each, on the same providers: the counters add both managers up
    managers = [StateManager(storage, telemetry=t) for t in (exported.telemetry, exported.another())]
    await race(managers)

    loads, commits = exported.spans("turnstate.turn.load"), exported.spans("turnstate.turn.commit")
    assert len(loads) == 2 and len(commits) == 2
    assert all(
        s.attributes == {"turnstate.turn.duplicate": False, "turnstate.turn.resumed": False} for s in loads
    )
    conflicted = [s for s in commits if s.events]
    assert len(conflicted) == 1
    (event,) = conflicted[0].events
    assert event.name == "turnstate.commit.conflict"
    assert event.attributes == {"turnstate.commit.attempt": 1, "storage.keys.count": 1}
    assert conflicted[0].attributes == {"turnstate.commit.final": True, "turnstate.commit.conflicts": 1}
    assert all(s.status.status_code is StatusCode.UNSET for s in loads + commits)

    reads, writes = exported.spans("agents.storage.read"), exported.spans("agents.storage.write")
    # each load reads conversation, user and private; the retry re-reads the conflicting conversation document
    assert sorted(s.attributes["storage.keys.count"] for s in reads) == [1, 3, 3]  # type: ignore[index]
    assert all(s.attributes["storage.operation"] == "read" for s in reads)  # type: ignore[index]
    assert len(writes) == 3 and all(s.attributes["storage.operation"] == "write" for s in writes)  # type: ignore[index]
    failed = [s for s in writes if s.status.status_code is StatusCode.ERROR]
    assert len(failed) == 1 and failed[0].attributes["error.type"] == "PreconditionFailedError"  # type: ignore[index]
    assert not failed[0].events  # no exception event: its message names the keys
    parents = {s.context.span_id: s.name for s in loads + commits}  # type: ignore[union-attr]
    assert all(s.parent is not None and s.parent.span_id in parents for s in reads + writes)
    retry_read = [s for s in reads if s.parent and parents[s.parent.span_id] == "turnstate.turn.commit"]
    assert len(retry_read) == 1 and retry_read[0].parent.span_id == conflicted[0].context.span_id  # type: ignore[union-attr]

    assert exported.counter("turnstate.turns") == 2
    assert exported.counter("turnstate.commits") == 2
    assert exported.counter("turnstate.commit.conflicts") == 1
    assert exported.counter("turnstate.commit.merges") == 1
    assert exported.counter("turnstate.commit.retries") == 1
    assert exported.counter("turnstate.commit.give_ups") == 0
    assert exported.counter("turnstate.duplicates") == 0
    durations = exported.metrics()["turnstate.storage.operation.duration"]
    assert all(isinstance(p, HistogramDataPoint) for p in durations)
    counts = {(p.attributes["storage.operation"], p.attributes.get("error.type")): p.count for p in durations}
    assert counts == {("read", None): 3, ("write", None): 2, ("write", "PreconditionFailedError"): 1}

    text = exported.exported_text()
    assert SECRET not in text
    assert CONVERSATION not in text and "29:user-1" not in text


async def test_keys_are_recorded_only_when_allowed(storage: Storage) -> None:
    exported = Exported(record_keys=True)
    await race([StateManager(storage, telemetry=exported.telemetry) for _ in range(2)])

    reads = exported.spans("agents.storage.read")
    keys = [k for s in reads for k in s.attributes["storage.keys"]]  # type: ignore[union-attr,index]
    assert any(CONVERSATION in k for k in keys) and any("29:user-1" in k for k in keys)
    (event,) = [e for s in exported.spans("turnstate.turn.commit") for e in s.events]
    assert len(event.attributes["storage.keys"]) == 1  # type: ignore[index,arg-type]
    assert CONVERSATION in event.attributes["storage.keys"][0]  # type: ignore[index]
    assert SECRET not in exported.exported_text()


async def test_a_commit_that_gives_up_fails_its_span_without_the_message(storage: Storage) -> None:
    exported = Exported()
    managers = [StateManager(storage, telemetry=exported.telemetry, max_commit_attempts=1) for _ in range(2)]
    with pytest.raises(CommitRetriesExhaustedError):
        await race(managers)

    (failed,) = [
        s for s in exported.spans("turnstate.turn.commit") if s.status.status_code is StatusCode.ERROR
    ]
    assert failed.attributes["error.type"] == "CommitRetriesExhaustedError"  # type: ignore[index]
    assert [e.name for e in failed.events] == ["turnstate.commit.conflict"]
    assert exported.counter("turnstate.commit.give_ups") == 1
    assert exported.counter("turnstate.commit.retries") == 0
    text = exported.exported_text()
    assert SECRET not in text and CONVERSATION not in text


async def test_the_traced_storage_keeps_capabilities_and_traces_deletes(storage: Storage) -> None:
    exported = Exported()
    manager = StateManager(storage, telemetry=exported.telemetry)
    assert manager.storage is storage
    traced = manager.config.storage
    assert traced is not storage and traced.capabilities == storage.capabilities
    await traced.delete(["a", "b"])
    (delete,) = exported.spans("agents.storage.delete")
    assert delete.attributes == {"storage.operation": "delete", "storage.keys.count": 2}


async def test_without_telemetry_turns_and_storage_are_plain(storage: Storage) -> None:
    manager = StateManager(storage)
    assert manager.telemetry is None and manager.config.storage is storage
    async with manager.turn(message()) as state:
        state.conversation.set("x", 1)
    assert manager.stats["commits"] == 1


def test_turnstate_runs_turns_without_importing_opentelemetry() -> None:
    script = (
        "import asyncio, sys\n"
        "from turnstate import MemoryStorage, StateManager\n"
        "async def main():\n"
        "    async with StateManager(MemoryStorage()).turn({'type': 'message', 'channelId': 'c',"
        " 'conversation': {'id': 'c1'}, 'from': {'id': 'u1'}, 'recipient': {'id': 'b1'}}) as state:\n"
        "        state.conversation.set('x', 1)\n"
        "asyncio.run(main())\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
