"""CosmosStorage on the Cosmos test server: items as stored, foreign items, ownership, errors."""

from __future__ import annotations

import asyncio
import socket
import uuid
from typing import Any

import pytest
from azure.cosmos import PartitionKey
from azure.cosmos.aio import ContainerProxy, CosmosClient
from cosmos_test_server import EMULATOR_KEY, CosmosTestServer, MakeStorage, client_options
from turnstate_cosmos import CosmosStorage, RequestCharges
from turnstate_cosmos._keys import item_id

from turnstate import Scope, StateManager
from turnstate.errors import (
    CorruptDocumentError,
    InvalidItemError,
    InvalidKeyError,
    PreconditionFailedError,
    StorageError,
    StorageUnavailableError,
)
from turnstate.storage.base import WriteItem
from turnstate.testing import ManualClock

KEY = object()  # stands for the test's key in the parametrized items


def new_key(name: str = "k") -> str:
    return f"usage/{uuid.uuid4().hex}/{name}"


async def raw_container(storage: CosmosStorage, client: CosmosClient) -> ContainerProxy:
    """The SDK's proxy for the container behind a storage (set up by the storage first)."""
    settings = await storage.describe()
    return client.get_database_client(settings.database).get_container_client(settings.container)


async def test_item_layout(
    make_storage: MakeStorage, clock: ManualClock, cosmos_client: CosmosClient
) -> None:
    """An item holds the escaped id, the real key, the value as text, expires_at and ttl.

    The ttl Cosmos DB expires the item by is the ttl rounded up plus one second: Cosmos counts it from
    the item's _ts, rounded down to the second, and must not delete the item before expires_at.
    """
    storage = make_storage(clock=clock)
    key = new_key("a/b?c#d")
    value = b'{"greeting":"h\\u00e9llo","n":1}'
    etag = (await storage.write({key: WriteItem(value, ttl=2.5)}))[key]
    container = await raw_container(storage, cosmos_client)
    [row] = [
        row
        async for row in container.query_items(
            "SELECT * FROM c WHERE c.key = @k", parameters=[{"name": "@k", "value": key}]
        )
    ]
    assert row["id"] == item_id(key) == key.replace("/", "%2F").replace("?", "%3F").replace("#", "%23")
    assert (row["key"], row["value"], row["expires_at"], row["ttl"]) == (
        key,
        value.decode(),
        clock.now + 2.5,
        4,
    )
    assert etag.startswith(row["_etag"])
    await storage.write({key: WriteItem(value)})
    [row] = [
        row
        async for row in container.query_items(
            "SELECT * FROM c WHERE c.key = @k", parameters=[{"name": "@k", "value": key}]
        )
    ]
    assert (row["expires_at"], row["ttl"]) == (None, -1)


@pytest.mark.parametrize(
    "item",
    [
        {"x": 1},
        {"key": "someone-else", "value": "{}"},
        {"key": KEY, "value": 12, "expires_at": None},
        {"key": KEY, "value": "{}", "expires_at": "tomorrow"},
    ],
    ids=["foreign", "other-key", "value-not-text", "bad-expiry"],
)
async def test_foreign_or_damaged_item_raises_corrupt_document_naming_the_key(
    make_storage: MakeStorage, cosmos_client: CosmosClient, item: dict[str, Any]
) -> None:
    """An item turnstate did not write is reported, never read as data, never replaced by create-only."""
    storage = make_storage()
    key = new_key()
    container = await raw_container(storage, cosmos_client)
    body = {name: key if value is KEY else value for name, value in item.items()}
    await container.create_item({**body, "id": item_id(key)})
    with pytest.raises(CorruptDocumentError) as info:
        await storage.read([key])
    assert info.value.key == key
    assert repr(key) in str(info.value)
    with pytest.raises(CorruptDocumentError):
        await storage.write({key: WriteItem(b"{}", if_match=None)})


async def test_hashed_id_holding_another_key_is_refused(
    make_storage: MakeStorage, cosmos_client: CosmosClient
) -> None:
    """A long key's item is checked against the real key stored in it."""
    storage = make_storage()
    key = new_key("x" * 300)
    container = await raw_container(storage, cosmos_client)
    await container.create_item(
        {"id": item_id(key), "key": key + "-other", "value": "{}", "expires_at": None}
    )
    with pytest.raises(CorruptDocumentError, match="belongs to another key"):
        await storage.read([key])


async def test_list_keys_refuses_an_item_whose_key_does_not_match_its_id(
    make_storage: MakeStorage, cosmos_client: CosmosClient
) -> None:
    storage = make_storage()
    prefix = new_key("")
    container = await raw_container(storage, cosmos_client)
    await container.create_item({"id": "not-" + uuid.uuid4().hex, "key": prefix + "x", "value": "{}"})
    with pytest.raises(CorruptDocumentError):
        _ = [key async for key in storage.list_keys(prefix)]


async def test_stale_etag_of_an_expired_item_is_refused_without_a_request(
    make_storage: MakeStorage, cosmos_server: CosmosTestServer, clock: ManualClock
) -> None:
    """The ETag carries the item's expiry, so a write against an expired version fails locally."""
    storage = make_storage(clock=clock)
    key = new_key()
    etag = (await storage.write({key: WriteItem(b"{}", ttl=5)}))[key]
    clock.advance(6)
    cosmos_server.reset_requests()
    with pytest.raises(PreconditionFailedError):
        await storage.write({key: WriteItem(b"{}", if_match=etag)})
    assert cosmos_server.requests() == []
    assert storage.last_call == RequestCharges()


async def test_values_that_are_not_utf8_are_refused_before_anything_is_written(
    make_storage: MakeStorage,
) -> None:
    storage = make_storage()
    good, bad = new_key("good"), new_key("bad")
    with pytest.raises(StorageError, match="UTF-8"):
        await storage.write({good: WriteItem(b"{}"), bad: WriteItem(b"\xff\xfe")})
    assert await storage.read([good, bad]) == {}


async def test_given_client_is_not_closed(cosmos_server: CosmosTestServer) -> None:
    """A storage built on a client the caller passed leaves it open; the caller closes it."""
    async with CosmosClient(cosmos_server.endpoint, EMULATOR_KEY, **client_options(cosmos_server)) as client:
        key = new_key()
        async with CosmosStorage(client=client, database="turnstate", container="state") as storage:
            await storage.write({key: WriteItem(b"{}")})
        async with CosmosStorage(client=client, database="turnstate", container="state") as again:
            assert (await again.read([key]))[key].value == b"{}"
        container = client.get_database_client("turnstate").get_container_client("state")
        async with CosmosStorage(container_client=container) as on_container:
            assert key in await on_container.read([key])


async def test_closed_storage_refuses_calls(make_storage: MakeStorage) -> None:
    storage = make_storage()
    await storage.aclose()
    with pytest.raises(StorageError, match="closed"):
        await storage.read(["k"])


async def test_missing_container_without_create_if_missing(
    make_storage: MakeStorage, database_name: str
) -> None:
    """create_if_missing=False on a missing database fails with the fix in the message."""
    storage = make_storage(database=database_name, create_if_missing=False)
    with pytest.raises(StorageError, match="does not exist") as info:
        await storage.read(["k"])
    assert not isinstance(info.value, StorageUnavailableError)


async def test_container_with_another_partition_key_is_refused(
    make_storage: MakeStorage, cosmos_server: CosmosTestServer, database_name: str
) -> None:
    async with CosmosClient(cosmos_server.endpoint, EMULATOR_KEY, **client_options(cosmos_server)) as client:
        database = await client.create_database_if_not_exists(database_name)
        await database.create_container_if_not_exists("wrong", partition_key=PartitionKey("/key"))
    storage = make_storage(database=database_name, container="wrong")
    with pytest.raises(StorageError, match="partitioned by"):
        await storage.read(["k"])


async def test_unreachable_server_raises_storage_unavailable() -> None:
    """A refused connection fails the call with StorageUnavailableError chained from the SDK's error."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with CosmosStorage(f"https://127.0.0.1:{port}/", EMULATOR_KEY, "db", "c") as storage:
        with pytest.raises(StorageUnavailableError, match="failed to write") as info:
            await storage.write({"k": WriteItem(b"{}")})
    assert info.value.__cause__ is not None


def test_constructor_refuses_mixed_arguments() -> None:
    with pytest.raises(TypeError, match="database and container"):
        CosmosStorage("https://localhost:8081/", EMULATOR_KEY)
    with pytest.raises(TypeError, match="credential"):
        CosmosStorage("https://localhost:8081/", None, "db", "c")
    with pytest.raises(TypeError, match="client"):
        CosmosStorage(client=object(), database="db", container="c")  # type: ignore[arg-type]


def test_capabilities_are_declared() -> None:
    caps = CosmosStorage.capabilities
    assert (caps.atomic_batch, caps.native_ttl, caps.list_keys, caps.shared) == (False, False, True, True)


async def test_instances_starting_together_on_a_new_database_all_work(
    make_storage: MakeStorage, database_name: str
) -> None:
    """Several bot instances creating the same database and container at once: none fails."""
    storages = [make_storage(database_name) for _ in range(8)]
    await asyncio.gather(*(s.write({f"k{i}": WriteItem(b'{"n":1}')}) for i, s in enumerate(storages)))
    found = await storages[0].read([f"k{i}" for i in range(8)])
    assert len(found) == 8


@pytest.mark.parametrize("ending", [" ", "\n", "\t", " \n", "  "], ids=repr)
async def test_a_scope_id_ending_in_whitespace_commits_with_the_other_scopes(
    make_storage: MakeStorage, ending: str
) -> None:
    """A custom scope whose id ends in whitespace has its own item, committed with the other scopes."""
    storage = make_storage()
    incident = f"incident {uuid.uuid4().hex}"
    scope = Scope("incident", key=lambda activity: incident + ending)
    bare = Scope("bare", key=lambda activity: incident)
    manager = StateManager(storage, scopes=[scope, bare])
    activity = {
        "type": "message",
        "channelId": "msteams",
        "conversation": {"id": f"19:{uuid.uuid4().hex}"},
        "from": {"id": "29:user"},
        "recipient": {"id": "28:bot"},
    }
    async with manager.turn(activity) as state:
        state.conversation.set("n", 1)
        state.incident.set("status", "open")
        state.bare.set("status", "bare")
    async with manager.turn(activity) as state:
        assert state.conversation.get("n") == 1
        assert (state.incident.get("status"), state.bare.get("status")) == ("open", "bare")


async def test_a_key_cosmos_cannot_store_is_refused_before_anything_is_written(
    make_storage: MakeStorage,
) -> None:
    """A lone surrogate cannot be sent as UTF-8: InvalidKeyError naming it, and no other key is written."""
    storage = make_storage()
    good, bad = new_key("good"), new_key("lone-\udc80-surrogate")
    with pytest.raises(InvalidKeyError) as info:
        await storage.write({good: WriteItem(b"{}"), bad: WriteItem(b"{}")})
    assert info.value.key == bad
    with pytest.raises(InvalidKeyError):
        await storage.read([good, bad])
    with pytest.raises(InvalidKeyError):
        await storage.delete([good, bad])
    assert await storage.read([good]) == {}


async def test_ttl_beyond_what_cosmos_accepts_is_refused_before_anything_is_written(
    make_storage: MakeStorage, cosmos_client: CosmosClient
) -> None:
    """Cosmos DB takes item ttls up to 2**31 - 1 s; the stored ttl is the ttl rounded up plus one."""
    storage = make_storage()
    good, bad = new_key("good"), new_key("bad")
    with pytest.raises(InvalidItemError, match="too large") as info:
        await storage.write({good: WriteItem(b"{}"), bad: WriteItem(b"{}", ttl=2**31 - 1.5)})
    assert info.value.key == bad
    assert await storage.read([good, bad]) == {}
    await storage.write({good: WriteItem(b"{}", ttl=2**31 - 2)})
    container = await raw_container(storage, cosmos_client)
    assert (await container.read_item(item_id(good), partition_key=item_id(good)))["ttl"] == 2**31 - 1


async def test_read_reports_each_items_expiry(make_storage: MakeStorage, clock: ManualClock) -> None:
    """StoredItem.expires_at is the write's clock plus its ttl, as a float, or None without a ttl."""
    clock.now = 1_800_000_000  # a whole number: still reported, and in the ETag, as a float
    storage = make_storage(clock=clock)
    expiring, lasting = new_key("expiring"), new_key("lasting")
    etags = await storage.write({expiring: WriteItem(b"{}", ttl=30), lasting: WriteItem(b"{}")})
    found = await storage.read([expiring, lasting])
    assert found[expiring].expires_at == 1_800_000_030.0
    assert isinstance(found[expiring].expires_at, float)
    assert found[lasting].expires_at is None
    assert {key: item.etag for key, item in found.items()} == etags
