"""What a benchmark run measured, as plain dataclasses that turn into JSON (:func:`as_json`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import msgspec


@dataclass(frozen=True, slots=True)
class Reading:
    """A server's running totals at one moment; None where the server does not tell."""

    requests: float | None = None
    request_units: float | None = None
    server_cpu: float | None = None
    """Seconds of CPU the server (every node) has used."""
    nodes: dict[str, float] | None = None
    """Requests (commands) of each server node, for how a cluster spreads the keys."""


@dataclass(frozen=True, slots=True)
class Sample:
    """Turns of one subject at one setting: throughput, latency percentiles, server work per turn."""

    subject: str
    turns: int
    seconds: float
    turns_per_second: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    requests_per_turn: float | None = None
    """Redis: commands the server processed; Cosmos DB: requests answered. None where not measurable."""
    request_units_per_turn: float | None = None
    """Cosmos DB: request units charged (``x-ms-request-charge``)."""
    client_cpu_us_per_turn: float | None = None
    """Microseconds of this process's CPU per turn: the bot's side (state layer, client library)."""
    server_cpu_us_per_turn: float | None = None
    """Redis: microseconds of server CPU (``INFO cpu``, every master's) per turn."""
    node_shares: dict[str, float] | None = None
    """Redis Cluster: each master's share of the commands."""


@dataclass(frozen=True, slots=True)
class ConcurrencyRow:
    conversations: int
    turnstate: Sample
    peers: list[Sample]

    @property
    def ratios(self) -> dict[str, float]:
        """turnstate's turns/s over each peer's."""
        ours = self.turnstate.turns_per_second
        return {p.subject: ours / p.turns_per_second for p in self.peers if p.turns_per_second > 0}


@dataclass(frozen=True, slots=True)
class SizeRow:
    document_kb: int
    conversations: int
    turnstate: Sample
    stored_bytes: int | None = None
    """The size of a conversation document as stored after the row (history, fields, redelivery window)."""


@dataclass(frozen=True, slots=True)
class HotRow:
    """``writers`` bot instances on one conversation, each its own StateManager and storage object."""

    writers: int
    turns: int
    seconds: float
    turns_per_second: float
    retries_per_turn: float
    conflicts_per_turn: float
    give_ups: int
    p50_ms: float
    p99_ms: float
    count_ok: bool
    """The stored count equals the turns that did not give up: no increment was lost."""


@dataclass(frozen=True, slots=True)
class ScaleRow:
    other_documents: int
    turnstate: Sample


@dataclass(frozen=True, slots=True)
class Target:
    peer: str
    min_ratio: float
    worst_ratio: float
    met: bool


@dataclass
class StorageResult:
    url: str
    storage: str
    server: str | None = None
    """The server's name and version where it tells (Redis ``INFO``)."""
    concurrency: list[ConcurrencyRow] = field(default_factory=list)
    sizes: list[SizeRow] = field(default_factory=list)
    hot: list[HotRow] = field(default_factory=list)
    scale: list[ScaleRow] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    skipped_peers: dict[str, str] = field(default_factory=dict)
    """Peers left out of the run, with the reason (a package not installed)."""
    error: str | None = None
    """What stopped this storage's run early, or its clean-up; None when all went well."""

    @property
    def scale_spread(self) -> float | None:
        """Slowest over fastest turns/s across the scale rows (1.0 = perfectly flat)."""
        rates = [row.turnstate.turns_per_second for row in self.scale]
        return min(rates) / max(rates) if len(rates) > 1 and max(rates) > 0 else None


@dataclass
class Run:
    """One ``turnstate bench`` run: where and how it ran, and each storage's results."""

    date: str
    command: str
    machine: dict[str, Any]
    versions: dict[str, str]
    plan: dict[str, Any]
    workload: str
    storages: list[StorageResult] = field(default_factory=list)


class MergeError(ValueError):
    """Runs that cannot be shown as one (measured on different machines)."""


def merged(runs: list[Run]) -> Run:
    """Several runs as one: every storage of each, in order; their commands joined with ``;``.

    Plan settings the runs disagree on become the list of each run's value. Runs from different machines
    are refused: their figures cannot be compared.
    """
    first = runs[0]
    for run in runs[1:]:
        if run.machine != first.machine:
            raise MergeError(
                f"runs from different machines cannot be merged: {first.machine} and {run.machine}"
            )
    plan: dict[str, Any] = {}
    for name in first.plan:
        values = [run.plan.get(name) for run in runs]
        plan[name] = values[0] if all(value == values[0] for value in values) else values
    versions: dict[str, str] = {}
    for run in runs:
        versions.update(run.versions)
    return Run(
        date=max(run.date for run in runs),
        command=" ; ".join(run.command for run in runs),
        machine=first.machine,
        versions=versions,
        plan=plan,
        workload=first.workload,
        storages=[storage for run in runs for storage in run.storages],
    )


def from_json(data: bytes) -> Run:
    """A run written by ``turnstate bench --json``."""
    return msgspec.json.decode(data, type=Run)


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, ConcurrencyRow):
            out["ratios"] = value.ratios
        if isinstance(value, StorageResult):
            spread = value.scale_spread
            out["scale_spread"] = spread
            out["scale_flat"] = None if spread is None else spread >= SCALE_FLAT
        return out
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, float):
        return round(value, 4)
    return value


SCALE_FLAT = 0.8
"""The scale rows are flat when the slowest is at least this fraction of the fastest."""


def as_json(run: Run) -> dict[str, Any]:
    """The run as JSON-ready values (floats rounded to 4 places)."""
    plain: dict[str, Any] = _plain(run)
    return plain
