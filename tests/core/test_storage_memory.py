from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from turnstate.storage.base import WriteItem
from turnstate.storage.memory import MemoryStorage
from turnstate.testing import ManualClock, StorageConformance


class TestMemoryConformance(StorageConformance):
    @pytest.fixture
    def clock(self) -> ManualClock:
        return ManualClock()

    @pytest.fixture
    async def storage(self, clock: ManualClock) -> AsyncIterator[MemoryStorage]:
        async with MemoryStorage(clock=clock) as storage:
            yield storage


async def test_read_never_creates_entries() -> None:
    storage = MemoryStorage()
    await storage.read([f"k{i}" for i in range(100)])
    assert len(storage) == 0


async def test_lru_eviction_keeps_recently_used() -> None:
    storage = MemoryStorage(max_entries=3)
    await storage.write({k: WriteItem(b"{}") for k in ("a", "b", "c")})
    await storage.read(["a"])
    await storage.write({"d": WriteItem(b"{}")})
    assert set(await storage.read(["a", "b", "c", "d"])) == {"a", "c", "d"}
    assert len(storage) == 3


async def test_purge_expired_counts_removed() -> None:
    clock = ManualClock()
    storage = MemoryStorage(clock=clock)
    await storage.write({"a": WriteItem(b"{}", ttl=1), "b": WriteItem(b"{}", ttl=10), "c": WriteItem(b"{}")})
    clock.now += 5
    assert storage.purge_expired() == 1
    assert len(storage) == 2


def test_max_entries_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_entries"):
        MemoryStorage(max_entries=0)
