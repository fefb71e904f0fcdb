"""The container: settings the storage creates it with, describe(), existing containers, native expiry."""

from __future__ import annotations

import uuid

import pytest
from azure.cosmos import PartitionKey
from azure.cosmos.aio import CosmosClient
from cosmos_test_server import CosmosTestServer, MakeStorage, wait_until_gone
from turnstate_cosmos import ContainerSettings, CosmosStorage
from turnstate_cosmos._keys import item_id

from turnstate.errors import StorageError
from turnstate.storage.base import WriteItem


def new_key(name: str = "k") -> str:
    return f"container/{uuid.uuid4().hex}/{name}"


async def test_created_container_indexes_only_the_key_and_expires_items_by_their_ttl(
    make_storage: MakeStorage, database_name: str
) -> None:
    storage = make_storage(database=database_name)
    settings = await storage.describe()
    assert settings == ContainerSettings(
        database=database_name,
        container="state",
        partition_key_paths=("/id",),
        default_ttl=-1,
        indexing_mode="consistent",
        included_paths=("/key/?",),
        excluded_paths=("/*", '/"_etag"/?'),
        indexing_policy=settings.indexing_policy,
    )
    assert settings.indexing_policy["automatic"] is True
    assert settings.indexes_only_key
    assert settings.native_expiry


async def test_existing_container_with_the_default_policy_works_and_is_described_as_it_is(
    make_storage: MakeStorage, cosmos_client: CosmosClient, database_name: str
) -> None:
    """A container made elsewhere (everything indexed, no TTL) is used as it is, never changed."""
    database = await cosmos_client.create_database_if_not_exists(database_name)
    await database.create_container_if_not_exists("existing", partition_key=PartitionKey("/id"))
    storage = make_storage(database=database_name, container="existing", create_if_missing=False)
    prefix = new_key("")
    key, other = prefix + "a", prefix + "b"

    etags = await storage.write({key: WriteItem(b'{"n":1}'), other: WriteItem(b'{"n":2}', ttl=60)})
    etags |= await storage.write({key: WriteItem(b'{"n":3}', if_match=etags[key])})
    found = await storage.read([key, other])
    assert {k: (v.value, v.etag) for k, v in found.items()} == {
        key: (b'{"n":3}', etags[key]),
        other: (b'{"n":2}', etags[other]),
    }
    assert {k async for k in storage.list_keys(prefix)} == {key, other}
    await storage.delete([key])
    assert list(await storage.read([key, other])) == [other]

    settings = await storage.describe()
    assert (settings.partition_key_paths, settings.default_ttl) == (("/id",), None)
    assert (settings.included_paths, settings.excluded_paths) == (("/*",), ('/"_etag"/?',))
    assert not settings.indexes_only_key
    assert not settings.native_expiry


async def test_describe_of_a_missing_container_says_so(make_storage: MakeStorage, database_name: str) -> None:
    storage = make_storage(database=database_name, create_if_missing=False)
    with pytest.raises(StorageError, match="does not exist"):
        await storage.describe()


async def test_cosmos_expires_items_natively_and_the_storage_reads_them_as_absent(
    make_storage: MakeStorage, cosmos_client: CosmosClient, cosmos_server: CosmosTestServer
) -> None:
    """Cosmos DB removes an expired item itself; a create-only write over it is then a single create."""
    storage: CosmosStorage = make_storage()  # the real clock, as Cosmos DB's
    prefix = new_key("")
    expiring, staying = prefix + "expiring", prefix + "staying"
    await storage.write({expiring: WriteItem(b'{"n":1}', ttl=0.5), staying: WriteItem(b'{"n":2}')})
    settings = await storage.describe()
    container = cosmos_client.get_database_client(settings.database).get_container_client(settings.container)

    await wait_until_gone(container, item_id(expiring))
    assert list(await storage.read([expiring, staying])) == [staying]
    assert {k async for k in storage.list_keys(prefix)} == {staying}
    cosmos_server.reset_requests()
    await storage.write({expiring: WriteItem(b'{"n":3}', if_match=None)})
    assert [(r.operation, r.status) for r in cosmos_server.requests()] == [("create", 201)]
    assert (await storage.read([expiring]))[expiring].value == b'{"n":3}'
