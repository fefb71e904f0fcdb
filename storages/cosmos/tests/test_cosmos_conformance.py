"""The turnstate storage conformance suite against CosmosStorage on the Cosmos test server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from cosmos_test_server import MakeStorage
from turnstate_cosmos import CosmosStorage

from turnstate.testing import ManualClock, StorageConformance


class TestCosmosConformance(StorageConformance):
    # Expiry is checked against the injected clock below. The test server also deletes items by their
    # ttl in real time; a long ttl keeps it from doing so while a test runs.
    ttl_seconds = 60.0

    @pytest.fixture
    async def storage(self, make_storage: MakeStorage, clock: ManualClock) -> AsyncIterator[CosmosStorage]:
        async with make_storage(clock=clock) as storage:
            yield storage
