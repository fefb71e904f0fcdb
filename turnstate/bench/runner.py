"""Running the workload against one storage: the concurrency, document-size, hot-conversation and scale
rows, with the peers measured alongside turnstate in the same run."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from turnstate.bench.results import (
    ConcurrencyRow,
    HotRow,
    Reading,
    Sample,
    ScaleRow,
    SizeRow,
    StorageResult,
    Target,
)
from turnstate.bench.workload import Subject, TurnstateSubject, activity, keys_of
from turnstate.errors import CommitRetriesExhaustedError, StorageUnavailableError
from turnstate.manager import StateManager
from turnstate.storage.base import Storage, WriteItem

OTHER_DOCUMENT = b'{"v":1,"data":{"note":"' + b"o" * 256 + b'"}}'
SEED_BATCH = 250
"""Documents per write or delete call while seeding and cleaning up (some storages send a request each)."""
SEED_PARALLEL = 4
CLEAN_UP_ATTEMPTS = 3
ROWS = ("concurrency", "sizes", "scale", "hot")


@dataclass(frozen=True, slots=True)
class Plan:
    """What a run measures, and for how long."""

    levels: tuple[int, ...] = (1, 8, 64)
    document_kb: int = 1
    sizes_kb: tuple[int, ...] = (1, 4, 16, 64)
    size_conversations: int = 8
    writers: tuple[int, ...] = (8, 32)
    hot_turns: int = 25
    scale: tuple[int, ...] = (1_000, 1_000_000)
    scale_conversations: int = 8
    seconds: float = 2.0
    rounds: int = 3
    rows: tuple[str, ...] = ROWS

    @classmethod
    def quick(cls) -> Plan:
        return cls(hot_turns=4, scale=(1_000, 10_000), seconds=0.25, rounds=1)

    def steps(self, peers: int) -> int:
        """Progress steps of one storage's run (seeding counts a step per batch of documents)."""
        seeding, stored = 0, 0
        for documents in sorted(self.scale):
            seeding += -(-(documents - stored) // SEED_BATCH)
            stored = documents
        per_row = {
            "concurrency": len(self.levels) * self.rounds * (1 + peers),
            "sizes": len(self.sizes_kb),
            "hot": len(self.writers),
            "scale": len(self.scale) * self.rounds + seeding,
        }
        return sum(per_row[row] for row in self.rows)


class Meter(Protocol):
    """The server work done so far."""

    async def reading(self) -> Reading: ...


class Peer(Subject, Protocol):
    async def forget(self) -> None:
        """Delete what this peer wrote."""
        ...


@dataclass
class PeerEntry:
    """A peer in the run and the meter of its server work (None: not measurable)."""

    subject: Peer
    meter: Meter | None
    min_ratio: float | None = None
    """turnstate must reach this fraction of the peer's turns/s (the storage's own client)."""


@dataclass
class Subjects:
    """What one storage's run compares: turnstate over ``storage`` and the peers."""

    url: str
    storage: Storage
    name: str
    """The storage as reports name it (its class and where its data is)."""
    reopen: Callable[[], AbstractAsyncContextManager[Storage]]
    """Another storage object over the same data (a second bot instance), for the hot-conversation rows."""
    meter: Meter | None
    peers: list[PeerEntry]
    skipped_peers: dict[str, str]


Advance = Callable[[int], None]


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile of already sorted values (0 for none)."""
    if not sorted_values:
        return 0.0
    rank = max(0, min(len(sorted_values) - 1, round(fraction * len(sorted_values) + 0.5) - 1))
    return sorted_values[rank]


async def _reading(meter: Meter | None) -> Reading:
    return Reading() if meter is None else await meter.reading()


def _per_turn(after: float | None, before: float | None, turns: int, scale: float = 1.0) -> float | None:
    return None if after is None or before is None or not turns else scale * (after - before) / turns


def _shares(after: Reading, before: Reading) -> dict[str, float] | None:
    if after.nodes is None or before.nodes is None or len(after.nodes) < 2:
        return None
    done = {node: after.nodes[node] - before.nodes.get(node, 0.0) for node in after.nodes}
    total = sum(done.values())
    return {node: count / total for node, count in sorted(done.items())} if total > 0 else None


class Runner:
    """Measures one storage under ``plan``; ``advance`` moves the progress bar."""

    def __init__(self, subjects: Subjects, plan: Plan, run: str, advance: Advance) -> None:
        self.subjects = subjects
        self.plan = plan
        self.run = run
        self.advance = advance
        self._numbers = itertools.count(1)
        self._written: list[tuple[str, int, int]] = []  # (run, conversations, writers) turnstate wrote
        self._others = 0

    async def measure(
        self, subject: Subject, meter: Meter | None, conversations: int, seconds: float
    ) -> Sample:
        """``conversations`` loops of turns for ``seconds``, each conversation warmed up first."""
        await asyncio.gather(*(subject.turn(c, next(self._numbers)) for c in range(conversations)))
        latencies: list[float] = []
        before = await _reading(meter)
        clock = time.perf_counter
        stop = clock() + seconds

        async def conversation(index: int) -> None:
            while clock() < stop:
                started = clock()
                await subject.turn(index, next(self._numbers))
                latencies.append(clock() - started)

        started, cpu = clock(), time.process_time()
        await asyncio.gather(*(conversation(c) for c in range(conversations)))
        elapsed, cpu = clock() - started, time.process_time() - cpu
        after = await _reading(meter)
        latencies.sort()
        turns = len(latencies)
        return Sample(
            subject.name,
            turns,
            elapsed,
            turns / elapsed,
            1000 * percentile(latencies, 0.50),
            1000 * percentile(latencies, 0.95),
            1000 * percentile(latencies, 0.99),
            _per_turn(after.requests, before.requests, turns),
            _per_turn(after.request_units, before.request_units, turns),
            1e6 * cpu / turns if turns else None,
            _per_turn(after.server_cpu, before.server_cpu, turns, 1e6),
            _shares(after, before),
        )

    def _ours(self, run: str, document_kb: int, conversations: int) -> TurnstateSubject:
        self._written.append((run, conversations, 0))
        return TurnstateSubject(self.subjects.storage, run, 1024 * document_kb)

    async def _best(self, subject: Subject, meter: Meter | None, conversations: int) -> Sample:
        best: Sample | None = None
        for _ in range(self.plan.rounds):
            sample = await self.measure(subject, meter, conversations, self.plan.seconds)
            self.advance(1)
            if best is None or sample.turns_per_second > best.turns_per_second:
                best = sample
        assert best is not None
        return best

    async def concurrency(self) -> list[ConcurrencyRow]:
        """turnstate and every peer at each concurrency level, rounds alternating, best round kept."""
        plan, ours = self.plan, self._ours(self.run, self.plan.document_kb, max(self.plan.levels))
        rows = []
        for level in plan.levels:
            samples: dict[str, Sample] = {}
            entries: list[tuple[Subject, Meter | None]] = [(ours, self.subjects.meter)]
            entries += [(peer.subject, peer.meter) for peer in self.subjects.peers]
            for _ in range(plan.rounds):
                for subject, meter in entries:
                    sample = await self.measure(subject, meter, level, plan.seconds)
                    self.advance(1)
                    kept = samples.get(subject.name)
                    if kept is None or sample.turns_per_second > kept.turns_per_second:
                        samples[subject.name] = sample
            peers = [samples[peer.subject.name] for peer in self.subjects.peers]
            rows.append(ConcurrencyRow(level, samples[ours.name], peers))
        return rows

    async def sizes(self) -> list[SizeRow]:
        rows = []
        for kb in self.plan.sizes_kb:
            conversations = self.plan.size_conversations
            subject = self._ours(f"{self.run}-{kb}k", kb, conversations)
            sample = await self.measure(subject, self.subjects.meter, conversations, self.plan.seconds)
            self.advance(1)
            (key, *_) = keys_of(subject.run, 1)
            stored = (await self.subjects.storage.read([key])).get(key)
            rows.append(SizeRow(kb, conversations, sample, None if stored is None else len(stored.value)))
        return rows

    async def hot(self) -> list[HotRow]:
        return [await self._hot(writers) for writers in self.plan.writers]

    async def _hot(self, writers: int) -> HotRow:
        run = f"{self.run}-hot{writers}"
        self._written.append((run, 1, writers))
        turns_each = self.plan.hot_turns
        async with _Opened(self.subjects.reopen, writers) as storages:
            subjects = [TurnstateSubject(storage, run, 1024 * self.plan.document_kb) for storage in storages]
            give_ups = 0
            latencies: list[float] = []

            async def writer(index: int) -> None:
                nonlocal give_ups
                for _ in range(turns_each):
                    started = time.perf_counter()
                    try:
                        await subjects[index].turn(0, next(self._numbers), writer=index)
                    except CommitRetriesExhaustedError:
                        give_ups += 1
                    latencies.append(time.perf_counter() - started)

            started = time.perf_counter()
            await asyncio.gather(*(writer(i) for i in range(writers)))
            elapsed = time.perf_counter() - started
            stats: dict[str, int] = {"retries": 0, "conflicts": 0}
            for subject in subjects:
                for name in stats:
                    stats[name] += subject.manager.stats[name]
            count = await _stored_count(storages[0], run)
        self.advance(1)
        turns = writers * turns_each
        latencies.sort()
        return HotRow(
            writers,
            turns,
            elapsed,
            turns / elapsed,
            stats["retries"] / turns,
            stats["conflicts"] / turns,
            give_ups,
            1000 * percentile(latencies, 0.50),
            1000 * percentile(latencies, 0.99),
            count == turns - give_ups,
        )

    async def scale(self) -> list[ScaleRow]:
        """The same turns with more and more other documents stored beside them."""
        rows = []
        conversations = self.plan.scale_conversations
        ours = self._ours(f"{self.run}-scale", self.plan.document_kb, conversations)
        for documents in sorted(self.plan.scale):
            await self._seed(documents)
            sample = await self._best(ours, self.subjects.meter, conversations)
            rows.append(ScaleRow(documents, sample))
        return rows

    def _other(self, index: int) -> str:
        return f"bench-other/{self.run}/{index:08d}"

    async def _seed(self, documents: int) -> None:
        storage = self.subjects.storage
        gate = asyncio.Semaphore(SEED_PARALLEL)

        async def batch(start: int) -> None:
            async with gate:
                end = min(documents, start + SEED_BATCH)
                await storage.write({self._other(i): WriteItem(OTHER_DOCUMENT) for i in range(start, end)})
            self.advance(1)

        await asyncio.gather(*(batch(s) for s in range(self._others, documents, SEED_BATCH)))
        self._others = documents

    async def clean_up(self) -> None:
        """Delete every document the run wrote: turnstate's, the other documents, the peers'."""
        storage = self.subjects.storage
        keys = [
            key
            for run, conversations, writers in self._written
            for key in keys_of(run, conversations, writers)
        ]
        keys += [self._other(i) for i in range(self._others)]
        gate = asyncio.Semaphore(SEED_PARALLEL)

        async def batch(chunk: list[str]) -> None:
            async with gate:
                for attempt in range(1, CLEAN_UP_ATTEMPTS + 1):
                    try:
                        await storage.delete(chunk)  # deleting again is harmless: a retry is safe
                        return
                    except StorageUnavailableError:
                        if attempt == CLEAN_UP_ATTEMPTS:
                            raise
                        await asyncio.sleep(attempt)

        await asyncio.gather(*(batch(keys[i : i + SEED_BATCH]) for i in range(0, len(keys), SEED_BATCH)))
        for peer in self.subjects.peers:
            await peer.subject.forget()


class _Opened:
    """``count`` storage objects from ``reopen``, closed together."""

    def __init__(self, reopen: Callable[[], AbstractAsyncContextManager[Storage]], count: int) -> None:
        self._managers = [reopen() for _ in range(count)]

    async def __aenter__(self) -> list[Storage]:
        return [await manager.__aenter__() for manager in self._managers]

    async def __aexit__(self, *exc: Any) -> None:
        for manager in self._managers:
            await manager.__aexit__(*exc)


async def _stored_count(storage: Storage, run: str) -> int:
    """conversation.count of the hot conversation, read through a turn that writes nothing."""
    manager = StateManager(storage, builtin_scopes=("conversation",), dedupe=False)
    async with manager.turn(activity(run, 0, 0)) as state:
        count: int = state.conversation.get("count", int, 0)
    return count


def targets(result: StorageResult, minimums: dict[str, float]) -> list[Target]:
    """turnstate's worst ratio to each peer that has a minimum, over the concurrency rows."""
    out = []
    for peer, minimum in minimums.items():
        ratios = [row.ratios[peer] for row in result.concurrency if peer in row.ratios]
        if ratios:
            out.append(Target(peer, minimum, min(ratios), min(ratios) >= minimum))
    return out


async def bench_storage(subjects: Subjects, plan: Plan, run: str, advance: Advance) -> StorageResult:
    """Every row of the plan for one storage; what the run wrote is deleted at the end, even on failure.

    A failure (while measuring or cleaning up) ends this storage's run; the rows measured so far are kept
    and the failure is in ``result.error``.
    """
    runner = Runner(subjects, plan, run, advance)
    result = StorageResult(subjects.url, subjects.name, skipped_peers=dict(subjects.skipped_peers))
    try:
        await _measure_rows(runner, plan, result)
    except Exception as exc:  # the rows measured so far are kept and shown with the error
        result.error = f"{type(exc).__name__}: {exc}"
    try:
        await runner.clean_up()
    except Exception as exc:
        result.error = (result.error + "; " if result.error else "") + (
            f"clean-up failed, documents of run {run!r} may remain (keys containing {run!r}): "
            f"{type(exc).__name__}: {exc}"
        )
    minimums = {p.subject.name: p.min_ratio for p in subjects.peers if p.min_ratio is not None}
    result.targets = targets(result, minimums)
    return result


async def _measure_rows(runner: Runner, plan: Plan, result: StorageResult) -> None:
    if "concurrency" in plan.rows:
        result.concurrency = await runner.concurrency()
    if "sizes" in plan.rows:
        result.sizes = await runner.sizes()
    # the hot rows last: on FileStorage their storm of fsyncs slowed the next rows for seconds
    if "scale" in plan.rows:
        result.scale = await runner.scale()
    if "hot" in plan.rows:
        result.hot = await runner.hot()
