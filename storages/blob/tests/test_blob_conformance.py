"""The turnstate storage conformance suite against BlobStorage on Azurite (or a real account)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
from azurite_server import MakeStorage
from turnstate_blob import BlobStorage

from turnstate.testing import ManualClock, StorageConformance
from turnstate.testing.conformance import Advance, Clock


class TestBlobConformance(StorageConformance):
    @pytest.fixture
    async def storage(self, make_storage: MakeStorage, clock: ManualClock) -> AsyncIterator[BlobStorage]:
        async with make_storage(clock=clock) as storage:
            yield storage

    @pytest.fixture
    def advance(self, clock: ManualClock) -> Advance:
        async def advance(seconds: float) -> None:
            clock.advance(seconds)

        return advance


class TestBlobConformanceRealClock(StorageConformance):
    """The same contract with the real clock: expiry as it happens in production."""

    @pytest.fixture
    async def storage(self, make_storage: MakeStorage) -> AsyncIterator[BlobStorage]:
        async with make_storage() as storage:
            yield storage

    @pytest.fixture
    def storage_clock(self) -> Clock:
        return time.time
