"""The test server answers like Cosmos DB where CosmosStorage depends on it (see testserver/server.js).

These pin each behaviour server.js adds to @vercel/cosmosdb-server, so that upgrading the package (or
changing server.js) fails here, loudly, rather than somewhere in the storage tests.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from azure.cosmos import PartitionKey
from azure.cosmos.aio import ContainerProxy, CosmosClient, DatabaseProxy
from azure.cosmos.exceptions import CosmosResourceExistsError, CosmosResourceNotFoundError
from cosmos_test_server import CosmosTestServer, wait_until_gone


@pytest.fixture
async def database(cosmos_client: CosmosClient, database_name: str) -> AsyncIterator[DatabaseProxy]:
    yield await cosmos_client.create_database_if_not_exists(database_name)


async def container(database: DatabaseProxy, name: str, **options: object) -> ContainerProxy:
    return await database.create_container_if_not_exists(name, partition_key=PartitionKey("/id"), **options)


def point_read_path(database: str, container: str, name: str) -> str:
    return f"/dbs/{database}/colls/{container}/docs/{name}"


def partition_header(name: str) -> dict[str, str]:
    return {"x-ms-documentdb-partitionkey": f'["{name}"]'}


async def test_point_read_of_a_missing_item_is_404_not_found_at_once(
    database: DatabaseProxy, cosmos_server: CosmosTestServer
) -> None:
    """404 with Cosmos DB's body and sub-status 0, so the SDK raises at once (a 500 would be retried)."""
    state = await container(database, "state")
    reply = cosmos_server.raw(
        "GET", point_read_path(database.id, "state", "missing"), partition_header("missing")
    )
    assert reply.status == 404
    assert reply.body["code"] == "NotFound"
    assert "does not exist" in reply.body["message"]
    assert reply.headers["x-ms-substatus"] == "0"
    assert reply.headers["content-type"] == "application/json"
    assert reply.headers["x-ms-request-charge"] == "1"
    assert reply.headers["x-ms-activity-id"]

    cosmos_server.reset_requests()
    with pytest.raises(CosmosResourceNotFoundError) as info:
        await state.read_item("missing", partition_key="missing")
    assert (info.value.status_code, info.value.sub_status) == (404, 0)
    assert [(r.operation, r.status) for r in cosmos_server.requests()] == [("read", 404)]


async def test_item_request_in_a_missing_container_is_404_owner_resource_missing(
    database: DatabaseProxy, cosmos_server: CosmosTestServer
) -> None:
    for path in (
        point_read_path(database.id, "nothing-here", "x"),
        point_read_path("no-such-database", "state", "x"),
    ):
        reply = cosmos_server.raw("GET", path, partition_header("x"))
        assert reply.status == 404
        assert reply.body["code"] == "NotFound"
        assert reply.headers["x-ms-substatus"] == "1003"
    reply = cosmos_server.raw(
        "DELETE", point_read_path(database.id, "nothing-here", "x"), partition_header("x")
    )
    assert (reply.status, reply.headers["x-ms-substatus"]) == (404, "1003")


async def ids_in(items: ContainerProxy) -> set[str]:
    return {row["id"] async for row in items.query_items("SELECT c.id FROM c")}


async def test_items_expire_by_ttl_only_where_the_container_has_a_default_ttl(
    database: DatabaseProxy,
) -> None:
    """defaultTtl -1: items expire by their own ttl; n: items without one expire after n s; unset: never.

    An item ttl of -1 never expires. An expired item reads as 404 and is gone from queries.
    """
    ttl_off = await container(database, "ttl-off")
    per_item = await container(database, "per-item", default_ttl=-1)
    one_second = await container(database, "one-second", default_ttl=1)
    # written first, so it would be gone before the others if the server expired it
    await ttl_off.create_item({"id": "off-1", "ttl": 1})
    await per_item.create_item({"id": "item-1", "ttl": 1})
    await per_item.create_item({"id": "item-never", "ttl": -1})
    await per_item.create_item({"id": "item-unset"})
    await one_second.create_item({"id": "default-unset"})
    await one_second.create_item({"id": "default-never", "ttl": -1})

    await wait_until_gone(per_item, "item-1")
    await wait_until_gone(one_second, "default-unset")
    assert await ids_in(per_item) == {"item-never", "item-unset"}
    assert await ids_in(one_second) == {"default-never"}
    assert await ids_in(ttl_off) == {"off-1"}
    assert (await ttl_off.read_item("off-1", partition_key="off-1"))["ttl"] == 1
    # the expired item is gone for writes too: a create of its id succeeds
    await per_item.create_item({"id": "item-1"})


async def test_every_response_carries_the_modelled_request_charge(
    database: DatabaseProxy, cosmos_server: CosmosTestServer
) -> None:
    """Point read 1 RU per started KB, write 5.7 RU per started KB, delete 5.7, query 2.5+, other 1."""
    items = await container(database, "charges")
    cosmos_server.reset_requests()
    small = await items.create_item({"id": "small"})
    large = await items.create_item({"id": "large", "s": "x" * 2500})
    read_small = await items.read_item("small", partition_key="small")
    read_large = await items.read_item("large", partition_key="large")
    replaced = await items.replace_item("small", {"id": "small", "n": 1})
    upserted = await items.upsert_item({"id": "small", "n": 2})
    rows = [row async for row in items.query_items("SELECT * FROM c")]
    await items.delete_item("small", partition_key="small")
    await database.read()

    charges = [
        float(response.get_response_headers()["x-ms-request-charge"])
        for response in (small, large, read_small, read_large, replaced, upserted)
    ]
    assert charges == [5.7, 17.1, 1, 3, 5.7, 5.7]
    assert len(rows) == 2
    logged = [(r.operation, r.charge) for r in cosmos_server.requests()]
    assert logged[:6] == [
        ("create", 5.7),
        ("create", 17.1),
        ("read", 1),
        ("read", 3),
        ("replace", 5.7),
        ("upsert", 5.7),
    ]
    queries = [charge for operation, charge in logged if operation == "query"]
    assert queries and all(charge >= 2.5 for charge in queries)
    assert ("delete", 5.7) in logged
    assert logged[-1] == ("other", 1)
    assert all(isinstance(charge, int | float) and charge > 0 for _, charge in logged)


async def test_request_log_records_each_request_with_its_status(
    database: DatabaseProxy, cosmos_server: CosmosTestServer
) -> None:
    items = await container(database, "log")
    name = f"item-{uuid.uuid4().hex}"
    cosmos_server.reset_requests()
    await items.create_item({"id": name})
    with pytest.raises(CosmosResourceExistsError):
        await items.create_item({"id": name})
    logged = cosmos_server.requests()
    assert [(r.method, r.operation, r.status) for r in logged] == [
        ("POST", "create", 201),
        ("POST", "create", 409),
    ]
    assert logged[0].path == f"/dbs/{database.id}/colls/log/docs/"
    assert logged[1].charge == 1
    cosmos_server.reset_requests()
    assert cosmos_server.requests() == []


async def test_container_without_an_indexing_policy_reports_cosmos_default(database: DatabaseProxy) -> None:
    properties = await (await container(database, "default-policy")).read()
    policy = properties["indexingPolicy"]
    assert (policy["indexingMode"], policy["automatic"]) == ("consistent", True)
    assert policy["includedPaths"] == [{"path": "/*"}]
    assert policy["excludedPaths"] == [{"path": '/"_etag"/?'}]
