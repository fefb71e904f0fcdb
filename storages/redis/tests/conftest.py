"""Fixtures for the Redis storage tests: real servers on free loopback ports, started once per session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from redis_test_servers import RedisClusterNodes, RedisServer, ServerError


def _started(what: str, server: RedisServer | RedisClusterNodes) -> None:
    try:
        server.start()
    except ServerError as exc:
        server.stop()
        reason = str(exc)
    else:
        return
    pytest.fail(f"could not start the {what} the Redis storage tests need: {reason}", pytrace=False)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A standalone redis-server shared by the session (no persistence)."""
    server = RedisServer(tmp_path_factory.mktemp("redis-standalone"))
    _started("redis-server", server)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterNodes]:
    """A 3-master Redis Cluster shared by the session."""
    cluster = RedisClusterNodes(tmp_path_factory.mktemp("redis-cluster"))
    _started("3-master Redis Cluster", cluster)
    yield cluster
    cluster.stop()


@pytest.fixture
def durable_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterNodes]:
    """A 3-master cluster of this test's own (append-only, fsync always), whose nodes it may kill."""
    cluster = RedisClusterNodes(
        tmp_path_factory.mktemp("durable-cluster"),
        extra_args=["--appendonly", "yes", "--appendfsync", "always"],
    )
    _started("restartable Redis Cluster", cluster)
    yield cluster
    cluster.stop()


@pytest.fixture
def durable_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own, which it may stop, kill, pause and restart.

    Append-only with fsync on every write, so whatever it acknowledged survives a kill -9.
    """
    server = RedisServer(tmp_path / "redis", args=["--appendonly", "yes", "--appendfsync", "always"])
    _started("restartable redis-server", server)
    yield server
    server.stop()
