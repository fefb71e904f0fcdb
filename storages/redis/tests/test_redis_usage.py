"""RedisStorage beyond the shared contract: construction, key layout, foreign data, TTL, TLS, sockets."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import redis
import redis.asyncio
from redis_test_servers import RedisServer
from turnstate_redis import DEFAULT_KEY_PREFIX, RedisStorage

from turnstate.errors import (
    CorruptDocumentError,
    InvalidItemError,
    InvalidKeyError,
    PreconditionFailedError,
    StorageError,
    StorageUnavailableError,
)
from turnstate.storage.base import WriteItem


def _key(name: str = "k") -> str:
    return f"usage/{uuid.uuid4().hex}/{name}"


async def test_items_are_stored_under_the_prefix_in_the_documented_layout(redis_server: RedisServer) -> None:
    """'<prefix><key>' holds 'ts1|<etag>|<value>'; the default prefix is 'turnstate:'."""
    key = _key("ünï")
    async with RedisStorage(redis_server.url) as storage:
        assert storage.key_prefix == DEFAULT_KEY_PREFIX == "turnstate:"
        etag = (await storage.write({key: WriteItem(b'{"a":1}')}))[key]
    with redis_server.admin() as admin:
        assert admin.get(f"turnstate:{key}".encode()) == b"ts1|" + etag.encode() + b'|{"a":1}'


async def test_prefixes_keep_bots_apart(redis_server: RedisServer) -> None:
    key = _key()
    async with (
        RedisStorage(redis_server.url, key_prefix="bot-a:") as a,
        RedisStorage(redis_server.url, key_prefix="bot-b:") as b,
    ):
        await a.write({key: WriteItem(b'{"bot":"a"}')})
        assert await b.read([key]) == {}
        await b.write({key: WriteItem(b'{"bot":"b"}', if_match=None)})
        assert (await a.read([key]))[key].value == b'{"bot":"a"}'
        assert [k async for k in b.list_keys(key)] == [key]


async def test_list_keys_treats_glob_characters_literally(redis_server: RedisServer) -> None:
    """Glob characters in the storage prefix or the listed prefix match only themselves."""
    prefix = f"glob[{uuid.uuid4().hex[:6]}]*?\\:"
    async with RedisStorage(redis_server.url, key_prefix=prefix) as storage:
        await storage.write({k: WriteItem(b"{}") for k in ["a*b/1", "a*b/2", "axb/3", "a?b/4", "a[b]/5"]})
        assert sorted([k async for k in storage.list_keys("a*b/")]) == ["a*b/1", "a*b/2"]
        assert [k async for k in storage.list_keys("a?")] == ["a?b/4"]
        assert [k async for k in storage.list_keys("a[")] == ["a[b]/5"]
        assert len([k async for k in storage.list_keys()]) == 5
    async with RedisStorage(redis_server.url, key_prefix=prefix.replace("*", "x")) as neighbour:
        assert [k async for k in neighbour.list_keys()] == []


@pytest.mark.parametrize(
    "foreign",
    [
        pytest.param(lambda admin, name: admin.set(name, b'{"v":1,"data":{}}'), id="plain-string"),
        pytest.param(lambda admin, name: admin.set(name, b""), id="empty-string"),
        pytest.param(lambda admin, name: admin.set(name, b"ts1|no-second-bar"), id="torn-header"),
        pytest.param(lambda admin, name: admin.rpush(name, b"x"), id="list"),
        pytest.param(lambda admin, name: admin.hset(name, "etag", "x"), id="hash"),
    ],
)
async def test_foreign_value_under_the_prefix_is_reported_not_overwritten(
    redis_server: RedisServer, foreign: object
) -> None:
    """Data turnstate did not write raises CorruptDocumentError naming the key, on read and on write."""
    key = _key()
    name = f"turnstate:{key}".encode()
    with redis_server.admin() as admin:
        foreign(admin, name)  # type: ignore[operator]
        before = admin.dump(name)
    async with RedisStorage(redis_server.url) as storage:
        with pytest.raises(CorruptDocumentError) as info:
            await storage.read([key])
        assert info.value.key == key
        for if_match in ("*", None, "some-etag"):
            with pytest.raises(CorruptDocumentError) as info:
                await storage.write({key: WriteItem(b"{}", if_match=if_match)})
            assert info.value.key == key
        with redis_server.admin() as admin:
            assert admin.dump(name) == before
        await storage.delete([key])
    with redis_server.admin() as admin:
        assert not admin.exists(name)


async def test_ttl_is_set_in_milliseconds_and_cleared_by_a_write_without_one(
    redis_server: RedisServer,
) -> None:
    key, tiny = _key("a"), _key("tiny")
    name = f"turnstate:{key}".encode()
    async with RedisStorage(redis_server.url) as storage:
        await storage.write({key: WriteItem(b"{}", ttl=2.5), tiny: WriteItem(b"{}", ttl=0.0001)})
        with redis_server.admin() as admin:
            assert 2000 < admin.pttl(name) <= 2500
        etag = (await storage.write({key: WriteItem(b"{}")}))[key]
        with redis_server.admin() as admin:
            assert admin.pttl(name) == -1
        await storage.write({key: WriteItem(b"{}", if_match=etag, ttl=60)})
        with redis_server.admin() as admin:
            assert 59_000 < admin.pttl(name) <= 60_000


async def test_bad_items_are_refused_before_anything_is_sent(redis_server: RedisServer) -> None:
    good = _key("good")
    async with RedisStorage(redis_server.url) as storage:
        with pytest.raises(InvalidItemError, match="ttl"):
            await storage.write({good: WriteItem(b"{}"), _key("inf"): WriteItem(b"{}", ttl=float("inf"))})
        with pytest.raises(InvalidItemError, match="bytes"):
            await storage.write({good: WriteItem(b"{}"), _key("str"): WriteItem("{}")})  # type: ignore[arg-type]
        with pytest.raises(InvalidKeyError):
            await storage.write({good: WriteItem(b"{}"), "lone-\udc80-surrogate": WriteItem(b"{}")})
        with pytest.raises(InvalidKeyError):
            await storage.read(["lone-\udc80-surrogate"])
        assert await storage.read([good]) == {}


async def test_precondition_failures_in_a_batch_report_what_was_written(redis_server: RedisServer) -> None:
    keys = [_key(str(i)) for i in range(4)]
    async with RedisStorage(redis_server.url) as storage:
        etags = await storage.write({k: WriteItem(b'{"n":1}') for k in keys})
        with pytest.raises(PreconditionFailedError) as info:
            await storage.write(
                {
                    keys[0]: WriteItem(b'{"n":2}', if_match=etags[keys[0]]),
                    keys[1]: WriteItem(b'{"n":2}', if_match="stale"),
                    keys[2]: WriteItem(b'{"n":2}', if_match=None),
                    keys[3]: WriteItem(b'{"n":2}'),
                }
            )
        assert info.value.keys == sorted(keys[1:3])
        found = await storage.read(keys)
        assert info.value.written == {k: found[k].etag for k in (keys[0], keys[3])}
        assert [found[k].value for k in keys] == [b'{"n":2}', b'{"n":1}', b'{"n":1}', b'{"n":2}']


async def test_a_client_passed_in_is_used_and_never_closed(redis_server: RedisServer) -> None:
    client = redis.asyncio.Redis.from_url(redis_server.url, decode_responses=True)
    key = _key()
    try:
        async with RedisStorage(client=client, key_prefix="given:") as storage:
            etag = (await storage.write({key: WriteItem(b'{"a":"\\u00fc"}')}))[key]
            # decode_responses on the client does not change what the storage returns.
            assert (await storage.read([key]))[key].value == b'{"a":"\\u00fc"}'
        assert await client.ping()
        assert await client.get(f"given:{key}") == f'ts1|{etag}|{{"a":"\\u00fc"}}'
    finally:
        await client.aclose()


def test_construction_mistakes_are_refused(redis_server: RedisServer) -> None:
    client = redis.asyncio.Redis.from_url(redis_server.url)
    with pytest.raises(TypeError, match="url"):
        RedisStorage(redis_server.url, client=client)
    with pytest.raises(TypeError, match="socket_timeout"):
        RedisStorage(client=client, socket_timeout=1)
    with pytest.raises(TypeError, match="max_connections"):
        RedisStorage(client=client, max_connections=3)
    with pytest.raises(TypeError, match="synchronous"):
        RedisStorage(client=redis.Redis())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="URL"):
        RedisStorage()
    with pytest.raises(TypeError, match="key_prefix"):
        RedisStorage(redis_server.url, key_prefix=b"x:")  # type: ignore[arg-type]


async def test_a_closed_storage_refuses_calls(redis_server: RedisServer) -> None:
    storage = RedisStorage(redis_server.url)
    await storage.read([_key()])
    await storage.aclose()
    with pytest.raises(StorageError, match="closed"):
        await storage.read([_key()])


async def test_unix_socket_url(redis_server: RedisServer) -> None:
    assert Path(redis_server.unixsocket).exists()
    key = _key()
    async with RedisStorage(f"unix://{redis_server.unixsocket}") as storage:
        etag = (await storage.write({key: WriteItem(b"{}")}))[key]
    async with RedisStorage(redis_server.url) as storage:
        assert (await storage.read([key]))[key].etag == etag


async def test_tls_url(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "tls", tls=True)
    server.start()
    try:
        key = _key()
        async with RedisStorage(server.url, ssl_ca_certs=str(server.certificate)) as storage:
            assert server.url.startswith("rediss://")
            etag = (await storage.write({key: WriteItem(b"{}")}))[key]
            assert (await storage.read([key]))[key].etag == etag
    finally:
        server.stop()


async def test_hiredis_parses_replies_when_installed(redis_server: RedisServer) -> None:
    from redis.asyncio.connection import DefaultParser
    from redis.utils import HIREDIS_AVAILABLE

    client = redis.asyncio.Redis.from_url(redis_server.url)
    try:
        async with RedisStorage(client=client) as storage:
            key = _key()
            etag = (await storage.write({key: WriteItem(b'{"n":1}')}))[key]
            assert (await storage.read([key]))[key].etag == etag
        assert HIREDIS_AVAILABLE
        # the class every connection of the pool parses replies with
        parser = client.connection_pool.connection_kwargs.get("parser_class", DefaultParser)
        assert "Hiredis" in parser.__name__
    finally:
        await client.aclose()


def test_importing_turnstate_does_not_import_redis() -> None:
    code = "import sys, turnstate, turnstate.storage, turnstate.testing; print('redis' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


async def test_a_refusal_by_redis_is_a_storage_error_naming_the_key(durable_redis: RedisServer) -> None:
    """Out of memory is not an outage: StorageError (not StorageUnavailableError) with Redis's reason."""
    key = _key()
    async with RedisStorage(durable_redis.url) as storage:
        await storage.write({_key("first"): WriteItem(b"{}")})
        with durable_redis.admin() as admin:
            admin.config_set("maxmemory", 1)
        try:
            with pytest.raises(StorageError) as info:
                await storage.write({key: WriteItem(b"{}")})
        finally:
            with durable_redis.admin() as admin:
                admin.config_set("maxmemory", 0)
        assert not isinstance(info.value, StorageUnavailableError)
        assert key in str(info.value)
        assert "OOM" in str(info.value) or "maxmemory" in str(info.value)
        await storage.write({key: WriteItem(b"{}")})
