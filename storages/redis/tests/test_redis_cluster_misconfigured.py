"""A Redis Cluster reached by a storage that was not told it is one."""

from __future__ import annotations

import uuid

import pytest
from redis_test_servers import RedisClusterNodes
from turnstate_redis import RedisStorage

from turnstate.errors import StorageError, StorageUnavailableError
from turnstate.storage.base import WriteItem


async def test_a_cluster_answering_moved_to_a_single_server_storage_says_to_pass_cluster_true(
    redis_cluster: RedisClusterNodes,
) -> None:
    keys = [f"moved/{uuid.uuid4().hex}/{i}" for i in range(12)]
    served_elsewhere = [
        k for k in keys if redis_cluster.node_for(f"turnstate:{k}".encode()).url != redis_cluster.url
    ]
    assert served_elsewhere  # the URL names one node; these keys' slots are on the others
    async with RedisStorage(redis_cluster.url) as storage:
        for action, answer, call in (
            # a single server's read is one command for all the keys: a cluster refuses it outright
            ("read", "CROSSSLOT", lambda: storage.read(keys)),
            ("read", "MOVED", lambda: storage.read(served_elsewhere[:1])),
            ("write", "MOVED", lambda: storage.write({k: WriteItem(b"{}") for k in keys})),
            ("delete", "MOVED", lambda: storage.delete(keys)),
        ):
            with pytest.raises(StorageError) as info:
                await call()
            message = str(info.value)
            assert not isinstance(info.value, StorageUnavailableError)  # retrying would not help
            assert f"answered {answer} to {action} 'moved/" in message
            assert "the server is a Redis Cluster" in message
            assert "Pass cluster=True (RedisStorage(url, cluster=True))" in message
            assert ("re-read before writing again" in message) == (action == "write")
    # configured as a cluster, the same keys work
    async with RedisStorage(redis_cluster.url, cluster=True) as storage:
        written = await storage.write({k: WriteItem(b"{}") for k in keys})
        assert set(await storage.read(keys)) == set(written) == set(keys)
        await storage.delete(keys)
