from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.backends import (
    Backend,
    blob_backend,
    cosmos_backend,
    file_backend,
    memory_backend,
    redis_backend,
)

# The storages' own test servers: real redis-server processes, the Cosmos-compatible server and Azurite,
# each on free loopback ports. Their modules import the storage packages, so they are imported only by the
# fixtures that start them: the core tests (tests/core) run with nothing but turnstate installed.
_STORAGES = Path(__file__).parent.parent / "storages"
sys.path.insert(0, str(_STORAGES / "redis" / "tests"))
sys.path.insert(0, str(_STORAGES / "cosmos" / "tests"))
sys.path.insert(0, str(_STORAGES / "blob" / "tests"))

BACKENDS = ["memory", "file", "redis", "redis-cluster", "cosmos", "blob"]
SHARED_BACKENDS = ["file", "redis", "redis-cluster", "cosmos", "blob"]


def _started(what: str, server: Any, failure: type[Exception]) -> Any:
    try:
        server.start()
    except failure as exc:
        server.stop()
        pytest.fail(f"could not start the {what} the scenario tests need: {exc}", pytrace=False)
    return server


@pytest.fixture(scope="session")
def scenario_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from redis_test_servers import RedisServer, ServerError

    server = _started("redis-server", RedisServer(tmp_path_factory.mktemp("scenario-redis")), ServerError)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def scenario_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from redis_test_servers import RedisClusterNodes, ServerError

    nodes = RedisClusterNodes(tmp_path_factory.mktemp("scenario-cluster"))
    cluster = _started("Redis Cluster", nodes, ServerError)
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def scenario_cosmos(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from cosmos_test_server import CosmosTestServer, ServerError

    server = CosmosTestServer(tmp_path_factory.mktemp("scenario-cosmos"))
    yield _started("Cosmos test server", server, ServerError)
    server.stop()


@pytest.fixture(scope="session")
def scenario_blob(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The connection string of Azurite (or of the account in TURNSTATE_BLOB_CONNECTION_STRING)."""
    from azurite_server import Azurite, ServerError, real_account

    real = real_account()
    if real is not None:
        yield real.connection_string
        return
    azurite = _started("Azurite", Azurite(tmp_path_factory.mktemp("scenario-azurite")), ServerError)
    yield azurite.connection_string
    azurite.stop()


def _backend(name: str, request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if name == "memory":
        return memory_backend()
    if name == "file":
        return file_backend(tmp_path / "state")
    if name == "redis":
        return redis_backend(request.getfixturevalue("scenario_redis").url, cluster=False)
    if name == "redis-cluster":
        return redis_backend(request.getfixturevalue("scenario_cluster").url, cluster=True)
    if name == "cosmos":
        from cosmos_test_server import EMULATOR_KEY

        server = request.getfixturevalue("scenario_cosmos")
        return cosmos_backend(server.endpoint, EMULATOR_KEY, str(server.certificate), str(server.key))
    if name == "blob":
        return blob_backend(request.getfixturevalue("scenario_blob"))
    raise ValueError(name)


@pytest.fixture(params=BACKENDS)
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    """Every storage that has landed, each test on fresh data."""
    b = _backend(request.param, request, tmp_path)
    yield b
    await b.close_all()


@pytest.fixture(params=SHARED_BACKENDS)
async def shared_backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    """Every storage that several processes can share."""
    b = _backend(request.param, request, tmp_path)
    yield b
    await b.close_all()
