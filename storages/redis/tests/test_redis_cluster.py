"""Redis Cluster specifics: a given RedisCluster client, and keys whose slot moves to another master."""

from __future__ import annotations

import uuid

import redis
import redis.asyncio
from redis_test_servers import RedisClusterNodes, calls_delta, command_calls
from turnstate_redis import RedisStorage

from turnstate.storage.base import WriteItem


def _refused_reads(port: int) -> int:
    """Read scripts (EVALSHA) the node answered with a redirection (MOVED/ASK) instead of running them."""
    with redis.Redis(host="127.0.0.1", port=port) as admin:
        return int(admin.info("commandstats").get("cmdstat_evalsha", {}).get("rejected_calls", 0))


async def test_a_cluster_client_passed_in_is_used_and_never_closed(redis_cluster: RedisClusterNodes) -> None:
    client = redis.asyncio.RedisCluster.from_url(redis_cluster.url)
    keys = [f"given/{uuid.uuid4().hex}/{i}" for i in range(12)]
    try:
        async with RedisStorage(client=client) as storage:
            etags = await storage.write({k: WriteItem(b"{}") for k in keys})
            assert {k: v.etag for k, v in (await storage.read(keys)).items()} == etags
        assert await client.ping()
    finally:
        await client.aclose()


async def test_keys_keep_working_while_their_slot_migrates(redis_cluster: RedisClusterNodes) -> None:
    """During a slot migration the storage follows ASK; after it, MOVED; reads and writes keep working."""
    tag = uuid.uuid4().hex
    old, new = f"migrate/{{{tag}}}/old", f"migrate/{{{tag}}}/new"
    async with RedisStorage(redis_cluster.url, cluster=True) as storage:
        etag = (await storage.write({old: WriteItem(b'{"n":1}')}))[old]
        source = redis_cluster.node_for(f"turnstate:{old}".encode())
        target = next(node for node in redis_cluster.nodes if node is not source)
        with source.admin() as src, target.admin() as dst:
            slot = int(src.execute_command("CLUSTER KEYSLOT", tag))
            src_id, dst_id = src.execute_command("CLUSTER MYID"), dst.execute_command("CLUSTER MYID")
            dst.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", src_id)
            src.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", dst_id)
            while names := src.execute_command("CLUSTER GETKEYSINSLOT", slot, 100):
                src.execute_command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *names)

            # Mid-migration: the source answers ASK for keys it no longer holds.
            before = command_calls(target.port)
            assert (await storage.read([old]))[old].etag == etag
            etag = (await storage.write({old: WriteItem(b'{"n":2}', if_match=etag)}))[old]
            await storage.write({new: WriteItem(b'{"n":1}', if_match=None)})
            # The read's EVALSHA, then each write's.
            assert calls_delta(before, command_calls(target.port))["asking"] == 3

            for node in (target, source, *(n for n in redis_cluster.nodes if n not in (source, target))):
                with node.admin() as admin:
                    admin.execute_command("CLUSTER SETSLOT", slot, "NODE", dst_id)
        redis_cluster.wait_ok()

        # Migration done: the source answers MOVED and the storage reloads its slot map.
        refused = _refused_reads(source.port)
        found = await storage.read([old, new])
        assert _refused_reads(source.port) - refused == 2
        assert {k: v.value for k, v in found.items()} == {old: b'{"n":2}', new: b'{"n":1}'}
        await storage.write({old: WriteItem(b'{"n":3}', if_match=etag)})
        before = command_calls(source.port)
        assert (await storage.read([old]))[old].value == b'{"n":3}'
        assert calls_delta(before, command_calls(source.port)) == {}
