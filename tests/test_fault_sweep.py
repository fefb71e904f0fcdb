"""The fault-injection sweep: every failure point of a turn, with redeliveries, on every storage.

Each schedule is named by a seed (see :mod:`tests.faults`). CI runs ``SWEEP`` schedules per storage;
``TURNSTATE_SWEEP=5000 ./scripts/test tests/test_fault_sweep.py`` runs more, and
``TURNSTATE_SWEEP_SEEDS=17,42`` exactly those.
"""

from __future__ import annotations

import os
from collections import Counter

from tests.support.backends import Backend
from tests.support.faults import POINTS, FaultyStorage, Instance, Schedule, run_schedule

SWEEP = int(os.environ.get("TURNSTATE_SWEEP", "72"))


def seeds() -> list[int]:
    chosen = os.environ.get("TURNSTATE_SWEEP_SEEDS")
    if chosen:
        return [int(seed) for seed in chosen.split(",")]
    return list(range(SWEEP))


async def test_every_failure_point_applies_each_change_exactly_once(backend: Backend) -> None:
    instances = (Instance(FaultyStorage(backend.open())), Instance(FaultyStorage(backend.open())))
    interferer = backend.open()
    anomalies: list[str] = []
    points: Counter[str] = Counter()
    for seed in seeds():
        schedule = Schedule.from_seed(seed)
        points[schedule.point] += 1
        anomalies += await run_schedule(schedule, instances, interferer, f"sweep-{backend.name}")
    print(f"{backend.name}: {sum(points.values())} schedules, {len(anomalies)} anomalies, {dict(points)}")
    assert not anomalies, "\n".join(anomalies)
    if len(seeds()) >= len(POINTS) * 4:
        assert set(points) == set(POINTS)  # every failure point was tried
