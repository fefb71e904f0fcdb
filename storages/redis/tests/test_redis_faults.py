"""Faults against real servers: crashes, restarts, a stalled server and a reply lost after the write ran."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import pytest
import redis
from redis_fault_proxy import ReplyDroppingProxy
from redis_test_servers import RedisClusterNodes, RedisServer, calls_delta, command_calls
from turnstate_redis import RedisStorage

from turnstate.errors import PreconditionFailedError, StorageUnavailableError
from turnstate.storage.base import WriteItem


def _key(name: str) -> str:
    return f"faults/{uuid.uuid4().hex}/{name}"


def _wait_until_only_this_client(server: RedisServer) -> None:
    with server.admin() as admin:
        for _ in range(500):
            if int(admin.info("clients")["connected_clients"]) == 1:
                return
            time.sleep(0.01)
    raise AssertionError("the server kept the storage's abandoned connections open")


async def test_crash_between_calls_fails_the_next_call_then_recovers(durable_redis: RedisServer) -> None:
    """kill -9 between calls: calls fail with StorageUnavailableError; after restart all data is there."""
    async with RedisStorage(durable_redis.url) as storage:
        key, other = _key("a"), _key("b")
        etags = await storage.write({key: WriteItem(b'{"n":1}'), other: WriteItem(b'{"n":2}')})
        durable_redis.kill()

        with pytest.raises(StorageUnavailableError) as info:
            await storage.read([key])
        assert isinstance(info.value.__cause__, redis.ConnectionError)
        with pytest.raises(StorageUnavailableError) as info:
            await storage.write({key: WriteItem(b'{"n":9}', if_match=etags[key])})
        assert isinstance(info.value.__cause__, redis.ConnectionError)
        assert key in str(info.value)

        durable_redis.start()
        found = await storage.read([key, other])
        assert {k: (v.value, v.etag) for k, v in found.items()} == {
            key: (b'{"n":1}', etags[key]),
            other: (b'{"n":2}', etags[other]),
        }
        await storage.write({key: WriteItem(b'{"n":3}', if_match=etags[key])})
        assert (await storage.read([key]))[key].value == b'{"n":3}'


async def test_restart_while_idle_does_not_fail_the_next_call(durable_redis: RedisServer) -> None:
    """Pooled connections to a server that restarted are replaced before anything is sent on them."""
    async with RedisStorage(durable_redis.url) as storage:
        key = _key("a")
        etag = (await storage.write({key: WriteItem(b'{"n":1}')}))[key]
        # Several pooled connections, all of them dead after the restart (which runs in a thread, so
        # this event loop sees the connections close, as it would in production).
        await asyncio.gather(*(storage.read([key]) for _ in range(4)))
        await asyncio.to_thread(durable_redis.restart)
        etags = await asyncio.gather(
            *(storage.write({key: WriteItem(b'{"n":2}', if_match=etag)}) for _ in range(4)),
            return_exceptions=True,
        )
        # The four writes raced with the same ETag: exactly one won, none failed to connect.
        assert sorted(type(e).__name__ for e in etags) == ["PreconditionFailedError"] * 3 + ["dict"]


async def test_crash_during_a_write_fails_it_and_applies_nothing(durable_redis: RedisServer) -> None:
    """The server dies with the write sent but not run: StorageUnavailableError, the old value stays."""
    async with RedisStorage(durable_redis.url) as storage:
        key = _key("a")
        etag = (await storage.write({key: WriteItem(b'{"n":1}')}))[key]
        durable_redis.pause()
        write = asyncio.create_task(storage.write({key: WriteItem(b'{"n":2}', if_match=etag)}))
        await asyncio.sleep(0.2)
        assert not write.done()
        durable_redis.kill()
        with pytest.raises(StorageUnavailableError):
            await write

        durable_redis.start()
        item = (await storage.read([key]))[key]
        assert (item.value, item.etag) == (b'{"n":1}', etag)
        await storage.write({key: WriteItem(b'{"n":3}', if_match=etag)})


async def test_stalled_server_times_out_then_the_next_call_works(durable_redis: RedisServer) -> None:
    """socket_timeout bounds a call to a server that stopped answering; nothing is re-sent."""
    async with RedisStorage(durable_redis.url, socket_timeout=0.3) as storage:
        key = _key("a")
        etag = (await storage.write({key: WriteItem(b'{"n":1}')}))[key]
        before = command_calls(durable_redis.port)
        durable_redis.pause()
        try:
            with pytest.raises(StorageUnavailableError) as info:
                await storage.write({key: WriteItem(b'{"n":2}', if_match=etag)})
            assert isinstance(info.value.__cause__, redis.TimeoutError)
            with pytest.raises(StorageUnavailableError):
                await storage.read([key])
        finally:
            durable_redis.resume()
        # Let the woken server finish with the two abandoned connections (it runs what they sent first).
        await asyncio.to_thread(_wait_until_only_this_client, durable_redis)
        found = (await storage.read([key]))[key]
        # Whatever the stalled server did with the write once it woke, it did it at most once (the write
        # script's SET; reads are scripts too, but never SET).
        delta = calls_delta(before, command_calls(durable_redis.port))
        assert delta.get("set", 0) <= 1
        assert (found.value == b'{"n":2}') == (delta.get("set", 0) == 1)


@pytest.fixture
async def proxy(durable_redis: RedisServer) -> AsyncIterator[ReplyDroppingProxy]:
    relay = ReplyDroppingProxy(durable_redis.port)
    await relay.start()
    yield relay
    await relay.aclose()


async def test_write_whose_reply_is_lost_is_not_replayed(
    durable_redis: RedisServer, proxy: ReplyDroppingProxy
) -> None:
    """The write ran but its reply never came: StorageUnavailableError, and the script ran exactly once.

    A replay would have failed its own precondition and reported a conflict that never happened.
    """
    async with RedisStorage(proxy.url) as storage:
        key, other = _key("a"), _key("b")
        etags = await storage.write({key: WriteItem(b'{"n":1}'), other: WriteItem(b'{"n":1}')})
        before = command_calls(durable_redis.port)
        proxy.drop_next_reply = True
        with pytest.raises(StorageUnavailableError) as info:
            await storage.write(
                {key: WriteItem(b'{"n":2}', if_match=etags[key]), other: WriteItem(b'{"n":2}')}
            )
        assert not isinstance(info.value, PreconditionFailedError)
        assert "re-read" in str(info.value)
        assert proxy.dropped == 1
        assert calls_delta(before, command_calls(durable_redis.port))["evalsha"] == 2

        found = await storage.read([key, other])
        assert {k: v.value for k, v in found.items()} == {key: b'{"n":2}', other: b'{"n":2}'}
        assert found[key].etag != etags[key]
        await storage.write({key: WriteItem(b'{"n":3}', if_match=found[key].etag)})


async def test_read_whose_reply_is_lost_fails_and_the_next_read_works(
    durable_redis: RedisServer, proxy: ReplyDroppingProxy
) -> None:
    async with RedisStorage(proxy.url) as storage:
        key = _key("a")
        etag = (await storage.write({key: WriteItem(b'{"n":1}')}))[key]
        proxy.drop_next_reply = True
        with pytest.raises(StorageUnavailableError):
            await storage.read([key])
        assert (await storage.read([key]))[key].etag == etag


async def test_cluster_master_crash_fails_its_keys_then_recovers(durable_cluster: RedisClusterNodes) -> None:
    """A master dies: calls touching its keys fail, the others' keys still work; after restart all is back."""
    async with RedisStorage(durable_cluster.url, cluster=True) as storage:
        keys = [_key(str(i)) for i in range(24)]
        etags = await storage.write({k: WriteItem(b'{"n":1}') for k in keys})
        victim = durable_cluster.nodes[1]
        on_victim = [k for k in keys if durable_cluster.node_for(f"turnstate:{k}".encode()) is victim]
        elsewhere = [k for k in keys if k not in on_victim]
        assert on_victim
        assert elsewhere
        victim.kill()

        with pytest.raises(StorageUnavailableError):
            await storage.read(keys)
        with pytest.raises(StorageUnavailableError):
            await storage.write({on_victim[0]: WriteItem(b'{"n":2}', if_match=etags[on_victim[0]])})
        assert set(await storage.read(elsewhere)) == set(elsewhere)

        victim.start()
        durable_cluster.wait_ok()
        found = await storage.read(keys)
        assert {k: v.etag for k, v in found.items()} == etags
        await storage.write({k: WriteItem(b'{"n":2}', if_match=etags[k]) for k in keys})
