from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from turnstate.storage.file import FileStorage
from turnstate.testing import StorageConformance
from turnstate.testing.conformance import Advance


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


class TestFileConformance(StorageConformance):
    @pytest.fixture
    def clock(self) -> FakeClock:
        return FakeClock()

    @pytest.fixture
    async def storage(self, tmp_path: Path, clock: FakeClock) -> AsyncIterator[FileStorage]:
        async with FileStorage(tmp_path / "state", clock=clock) as storage:
            yield storage

    @pytest.fixture
    def advance(self, clock: FakeClock) -> Advance:
        async def advance(seconds: float) -> None:
            clock.now += seconds

        return advance
