"""Fixtures for the Cosmos storage tests: one Cosmos-compatible test server per session, on a free port."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from azure.cosmos.aio import CosmosClient
from cosmos_test_server import EMULATOR_KEY, CosmosTestServer, MakeStorage, ServerError, client_options
from turnstate_cosmos import CosmosStorage

from turnstate.testing import ManualClock


@pytest.fixture(scope="session")
def cosmos_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CosmosTestServer]:
    """The Cosmos test server shared by the session; the tests fail (never skip) if it cannot start."""
    server = CosmosTestServer(tmp_path_factory.mktemp("cosmos"))
    try:
        server.start()
    except ServerError as exc:
        server.stop()
        pytest.fail(
            f"could not start the Cosmos test server the Cosmos storage tests need: {exc}", pytrace=False
        )
    yield server
    server.stop()


@pytest.fixture
def database_name() -> str:
    return f"db-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def make_storage(cosmos_server: CosmosTestServer) -> AsyncIterator[MakeStorage]:
    """Build CosmosStorage instances on the test server (database 'turnstate' unless given); closed after."""
    made: list[CosmosStorage] = []

    def make(database: str = "turnstate", container: str = "state", **options: Any) -> CosmosStorage:
        storage = CosmosStorage(
            cosmos_server.endpoint,
            EMULATOR_KEY,
            database,
            container,
            **client_options(cosmos_server),
            **options,
        )
        made.append(storage)
        return storage

    yield make
    for storage in made:
        await storage.aclose()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def cosmos_client(cosmos_server: CosmosTestServer) -> AsyncIterator[CosmosClient]:
    """The azure-cosmos SDK on the test server, for writing and inspecting items as they are stored."""
    async with CosmosClient(cosmos_server.endpoint, EMULATOR_KEY, **client_options(cosmos_server)) as client:
        yield client
