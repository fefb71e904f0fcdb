"""The storage conformance suite against a real redis-server and a real 3-master Redis Cluster."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis_test_servers import RedisClusterNodes, RedisServer
from turnstate_redis import RedisStorage

from turnstate.testing import StorageConformance


class TestRedisConformance(StorageConformance):
    @pytest.fixture
    async def storage(self, redis_server: RedisServer) -> AsyncIterator[RedisStorage]:
        async with RedisStorage(redis_server.url, key_prefix="conformance-test:") as storage:
            yield storage


class TestRedisClusterConformance(StorageConformance):
    @pytest.fixture
    async def storage(self, redis_cluster: RedisClusterNodes) -> AsyncIterator[RedisStorage]:
        async with RedisStorage(redis_cluster.url, cluster=True, key_prefix="conformance-test:") as storage:
            yield storage
