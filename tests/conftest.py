from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.backends import Backend, file_backend, memory_backend, redis_backend

# The Redis storage's test servers: real redis-server processes on free loopback ports.
sys.path.insert(0, str(Path(__file__).parent.parent / "storages" / "redis" / "tests"))
from redis_test_servers import RedisClusterNodes, RedisServer, ServerError

BACKENDS = ["memory", "file", "redis", "redis-cluster"]
SHARED_BACKENDS = ["file", "redis", "redis-cluster"]


def _started(what: str, server: Any) -> Any:
    try:
        server.start()
    except ServerError as exc:
        server.stop()
        pytest.fail(f"could not start the {what} the scenario tests need: {exc}", pytrace=False)
    return server


@pytest.fixture(scope="session")
def scenario_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = _started("redis-server", RedisServer(tmp_path_factory.mktemp("scenario-redis")))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def scenario_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterNodes]:
    cluster = _started("Redis Cluster", RedisClusterNodes(tmp_path_factory.mktemp("scenario-cluster")))
    yield cluster
    cluster.stop()


def _backend(name: str, request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if name == "memory":
        return memory_backend()
    if name == "file":
        return file_backend(tmp_path / "state")
    if name == "redis":
        return redis_backend(request.getfixturevalue("scenario_redis").url, cluster=False)
    if name == "redis-cluster":
        return redis_backend(request.getfixturevalue("scenario_cluster").url, cluster=True)
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
