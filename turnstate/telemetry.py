"""OpenTelemetry spans and metrics for turns and storage calls (``pip install "turnstate[otel]"``).

    manager = StateManager(storage, telemetry=Telemetry())

Spans: ``turnstate.turn.load`` and ``turnstate.turn.commit`` per turn (a checkpoint is a commit span with
``turnstate.commit.final`` false), each conflict an event on the commit span, and under them one span per
storage call, named as the Microsoft 365 Agents SDK names its own: ``agents.storage.read``, ``.write`` and
``.delete`` with ``storage.operation`` and ``storage.keys.count``. Keys carry user and conversation ids,
so they are recorded (``storage.keys``) only with ``record_keys=True``; stored values never are, and a
failed span carries the error's type (``error.type``), not its message (which names keys).

Metrics: counters read from :attr:`StateManager.stats` when the metrics are collected (turns pay nothing
for them), and the histogram ``turnstate.storage.operation.duration`` (ms) of storage calls.

A manager without telemetry runs the plain turn engine: none of this is on its path.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import cache
from typing import TYPE_CHECKING, Any, cast

try:
    from opentelemetry import metrics, trace
    from opentelemetry.metrics import CallbackOptions, Meter, MeterProvider, Observation
    from opentelemetry.trace import Span, StatusCode, TracerProvider
except ImportError as exc:  # pragma: no cover  (the otel extra is installed in development)
    raise ImportError(
        "turnstate.telemetry needs the OpenTelemetry API: pip install 'turnstate[otel]'"
    ) from exc

from turnstate.config import TurnConfig
from turnstate.state import TurnState
from turnstate.stats import Stats
from turnstate.storage.base import Capabilities, Storage, StoredItem, WriteItem
from turnstate.turn import OnConflict, Turn

if TYPE_CHECKING:
    from opentelemetry.util.types import AttributeValue

_COUNTERS = (
    ("turnstate.turns", "turns", "{turn}", "Turns loaded"),
    ("turnstate.commits", "commits", "{commit}", "Commits that wrote"),
    ("turnstate.commit.documents", "writes", "{document}", "Documents written by commits"),
    ("turnstate.commit.conflicts", "conflicts", "{conflict}", "Commit writes whose precondition failed"),
    ("turnstate.commit.merges", "merges", "{merge}", "Documents merged onto a newer stored one"),
    ("turnstate.commit.merge_conflicts", "merge_conflicts", "{conflict}", "Merges refused by policy"),
    ("turnstate.commit.retries", "retries", "{retry}", "Commit writes retried after a conflict"),
    ("turnstate.commit.give_ups", "gave_up", "{commit}", "Commits given up after the last attempt"),
    ("turnstate.duplicates", "duplicates", "{activity}", "Redeliveries detected"),
    ("turnstate.reruns", "reruns", "{turn}", "Turns re-run after a conflict"),
    ("turnstate.discards", "discards", "{turn}", "Turns discarded by an exception"),
)


class Telemetry:
    """Traces and measures the turns of the managers it is given (``StateManager(telemetry=...)``).

    ``tracer_provider`` / ``meter_provider``: the providers to use (default: the global ones).
    ``record_keys``: add the storage keys (which hold user and conversation ids) to spans.
    The counters add up the stats of every manager given a Telemetry on the same meter provider. Make it
    after setting the global meter provider, or pass one.
    """

    def __init__(
        self,
        *,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
        record_keys: bool = False,
    ) -> None:
        self.record_keys = record_keys
        self.tracer = trace.get_tracer("turnstate", tracer_provider=tracer_provider)
        meter = metrics.get_meter("turnstate", meter_provider=meter_provider)
        instruments = _instruments.get(meter)
        if instruments is None:
            instruments = _instruments[meter] = _Instruments(meter)
        self._instruments = instruments
        self.duration = instruments.duration

    def instrument(
        self, storage: Storage, stats: Stats
    ) -> tuple[Storage, Callable[[TurnConfig, Any, OnConflict], Turn]]:
        """What a manager with this telemetry uses: ``storage`` traced, and a maker of traced turns; its
        ``stats`` are counted from now on."""
        self.observe(stats)
        return self.storage(storage), self.turn

    def observe(self, stats: Stats) -> None:
        """Count ``stats`` (a manager's) in the counters."""
        observed = self._instruments.stats
        if not any(s is stats for s in observed):
            observed.append(stats)

    def storage(self, storage: Storage) -> Storage:
        """``storage`` with a span and a duration measurement around each call (same capabilities)."""
        return _traced_type(storage.capabilities)(storage, self)

    def turn(self, config: TurnConfig, activity: Any, on_conflict: OnConflict = None) -> Turn:
        """A turn whose load and commit are traced."""
        return _TracedTurn(self, config, activity, on_conflict)

    def conflict(self, keys: Sequence[str], attempt: int) -> None:
        """Record a commit conflict (on attempt ``attempt``) on the current commit span."""
        attributes: dict[str, AttributeValue] = {
            "turnstate.commit.attempt": attempt,
            "storage.keys.count": len(keys),
        }
        if self.record_keys:
            attributes["storage.keys"] = list(keys)
        span = trace.get_current_span()
        span.add_event("turnstate.commit.conflict", attributes)
        span.set_attribute("turnstate.commit.conflicts", attempt)

    @contextmanager
    def span(self, name: str, attributes: Mapping[str, AttributeValue]) -> Iterator[Span]:
        """A current span named ``name``; an exception marks it failed with its type only."""
        with self.tracer.start_as_current_span(
            name, attributes=attributes, record_exception=False, set_status_on_exception=False
        ) as span:
            try:
                yield span
            except BaseException as exc:
                span.set_attribute("error.type", type(exc).__qualname__)
                span.set_status(StatusCode.ERROR)
                raise


class _Instruments:
    """A meter's turnstate instruments, made once: an instrument made twice on one meter is ignored, so
    every Telemetry on that meter shares these, and the counters add up the stats of all their managers."""

    def __init__(self, meter: Meter) -> None:
        self.stats: list[Stats] = []
        for name, field, unit, description in _COUNTERS:
            meter.create_observable_counter(
                name, callbacks=[self._reader(field)], unit=unit, description=description
            )
        self.duration = meter.create_histogram(
            "turnstate.storage.operation.duration", unit="ms", description="Duration of storage calls"
        )

    def _reader(self, field: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def read(options: CallbackOptions) -> Iterable[Observation]:
            return [Observation(sum(getattr(stats, field) for stats in self.stats))]

        return read


_instruments: weakref.WeakKeyDictionary[Meter, _Instruments] = weakref.WeakKeyDictionary()


class _TracedTurn(Turn):
    __slots__ = ("_telemetry",)

    def __init__(
        self, telemetry: Telemetry, config: TurnConfig, activity: Any, on_conflict: OnConflict
    ) -> None:
        super().__init__(config, activity, on_conflict)
        self._telemetry = telemetry

    async def load(self) -> TurnState:
        with self._telemetry.span("turnstate.turn.load", {}) as span:
            state = await super().load()
            span.set_attribute("turnstate.turn.duplicate", self.duplicate)
            span.set_attribute("turnstate.turn.resumed", self.resumed)
            return state

    __aenter__ = load

    async def commit(self, on_conflict: OnConflict = None, *, final: bool = True) -> None:
        with self._telemetry.span("turnstate.turn.commit", {"turnstate.commit.final": final}):
            await super().commit(on_conflict, final=final)


class TracedStorage(Storage):
    """A storage whose calls are traced and timed by a :class:`Telemetry`; everything else is the wrapped
    storage's (its capabilities included)."""

    def __init__(self, storage: Storage, telemetry: Telemetry) -> None:
        self.wrapped = storage
        self.telemetry = telemetry

    @contextmanager
    def _call(self, operation: str, keys: Collection[str]) -> Iterator[None]:
        telemetry = self.telemetry
        attributes: dict[str, AttributeValue] = {
            "storage.operation": operation,
            "storage.keys.count": len(keys),
        }
        if telemetry.record_keys:
            attributes["storage.keys"] = list(keys)
        measured: dict[str, AttributeValue] = {"storage.operation": operation}
        start = time.perf_counter()
        try:
            with telemetry.span("agents.storage." + operation, attributes):
                yield
        except BaseException as exc:
            measured["error.type"] = type(exc).__qualname__
            raise
        finally:
            telemetry.duration.record((time.perf_counter() - start) * 1000.0, measured)

    async def read(self, keys: Collection[str]) -> dict[str, StoredItem]:
        with self._call("read", keys):
            return await self.wrapped.read(keys)

    async def write(self, items: Mapping[str, WriteItem]) -> dict[str, str]:
        with self._call("write", items):
            return await self.wrapped.write(items)

    async def delete(self, keys: Collection[str]) -> None:
        with self._call("delete", keys):
            await self.wrapped.delete(keys)

    async def list_keys(self, prefix: str = "") -> AsyncIterator[str]:
        async for key in self.wrapped.list_keys(prefix):
            yield key

    async def aclose(self) -> None:
        await self.wrapped.aclose()


@cache
def _traced_type(capabilities: Capabilities) -> type[TracedStorage]:
    """TracedStorage declaring ``capabilities`` (a class attribute in the storage protocol)."""
    return cast(
        "type[TracedStorage]", type("TracedStorage", (TracedStorage,), {"capabilities": capabilities})
    )
