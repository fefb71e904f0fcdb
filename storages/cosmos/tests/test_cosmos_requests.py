"""Round trips and request charges: the requests each call makes, as the test server logs them."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from typing import Any
from urllib.parse import unquote

import pytest
from cosmos_test_server import CosmosTestServer, LoggedRequest, MakeStorage
from turnstate_cosmos import RequestCharges
from turnstate_cosmos._keys import item_id

from turnstate import StateManager
from turnstate.errors import PreconditionFailedError
from turnstate.storage.base import WriteItem

WRITES = {"create", "replace", "upsert", "delete"}


def new_key(name: str = "k") -> str:
    return f"requests/{uuid.uuid4().hex}/{name}"


def charges_of(requests: list[LoggedRequest]) -> RequestCharges:
    """What the storage should have recorded for these logged requests."""
    kinds = Counter(r.operation for r in requests)
    return RequestCharges(
        point_reads=kinds["read"],
        writes=sum(kinds[kind] for kind in WRITES),
        queries=kinds["query"],
        request_units=sum(r.charge for r in requests),
    )


def item_ids(requests: list[LoggedRequest]) -> list[str]:
    """The item ids the requests addressed (the SDK quotes the id into the path once)."""
    return [unquote(r.path.rstrip("/").rsplit("/", 1)[1]) for r in requests]


def message(conversation: str, user: str) -> dict[str, Any]:
    return {
        "type": "message",
        "id": f"act-{uuid.uuid4().hex}",
        "channelId": "msteams",
        "serviceUrl": "https://smba.example/emea/",
        "conversation": {"id": conversation, "tenantId": "tenant-1"},
        "from": {"id": user},
        "recipient": {"id": "28:bot-1"},
        "text": "hi",
    }


async def test_read_is_one_point_read_per_key_and_no_query(
    make_storage: MakeStorage, cosmos_server: CosmosTestServer
) -> None:
    """read(N keys) makes N point reads, one per key, absent keys included (404), and no query."""
    storage = make_storage()
    keys = [new_key(f"k{i}") for i in range(20)]
    await storage.write({key: WriteItem(b"{}") for key in keys[:10]})
    cosmos_server.reset_requests()
    found = await storage.read([*keys, keys[0]])
    assert sorted(found) == sorted(keys[:10])
    requests = cosmos_server.requests()
    assert [r.operation for r in requests] == ["read"] * 20
    assert sorted(item_ids(requests)) == sorted(item_id(key) for key in keys)
    assert Counter(r.status for r in requests) == {200: 10, 404: 10}


async def test_write_of_n_keys_is_one_request_per_key(
    make_storage: MakeStorage, cosmos_server: CosmosTestServer
) -> None:
    """Each key is one upsert ("*"), create (create-only) or conditional replace (an ETag)."""
    storage = make_storage()
    keys = [new_key(f"k{i}") for i in range(5)]
    await storage.read(keys)
    cosmos_server.reset_requests()
    etags = await storage.write({key: WriteItem(b"{}") for key in keys})
    assert [r.operation for r in cosmos_server.requests()] == ["upsert"] * 5
    cosmos_server.reset_requests()
    etags = await storage.write({key: WriteItem(b"[]", if_match=etags[key]) for key in keys})
    assert [r.operation for r in cosmos_server.requests()] == ["replace"] * 5
    cosmos_server.reset_requests()
    fresh = [new_key(f"fresh{i}") for i in range(3)]
    await storage.write({key: WriteItem(b"{}", if_match=None) for key in fresh})
    assert [r.operation for r in cosmos_server.requests()] == ["create"] * 3


async def test_create_only_over_a_live_item_is_one_refused_create_and_one_point_read(
    make_storage: MakeStorage, cosmos_server: CosmosTestServer
) -> None:
    storage = make_storage()
    key = new_key()
    await storage.write({key: WriteItem(b"{}")})
    cosmos_server.reset_requests()
    with pytest.raises(PreconditionFailedError):
        await storage.write({key: WriteItem(b"[]", if_match=None)})
    requests = cosmos_server.requests()
    assert [(r.operation, r.status) for r in requests] == [("create", 409), ("read", 200)]
    assert storage.last_call == charges_of(requests)


async def test_a_turn_changing_conversation_and_user_is_two_point_reads_and_two_writes(
    make_storage: MakeStorage, cosmos_server: CosmosTestServer
) -> None:
    """Through StateManager: one point read per persisted scope, one write per changed scope, no query.

    The manager persists the conversation and user scopes here (the default adds "private": one point
    read more). The first turn creates both documents, the next ones replace them.
    """
    storage = make_storage()
    await storage.describe()  # sets the container up, so only the turns' requests are logged
    manager = StateManager(storage, builtin_scopes=("conversation", "user"))
    conversation, user = f"19:{uuid.uuid4().hex}@thread.v2", f"29:{uuid.uuid4().hex}"

    for turn in range(3):
        cosmos_server.reset_requests()
        before = storage.charges
        async with manager.turn(message(conversation, user)) as state:
            state.conversation.set("turns", turn)
            state.user.set("seen", turn)
        requests = cosmos_server.requests()
        operations = Counter(r.operation for r in requests)
        assert operations["read"] == 2, requests
        assert operations["query"] == 0, requests
        assert sum(operations[kind] for kind in WRITES) == 2, requests
        assert set(operations) == {"read", "create" if turn == 0 else "replace"}, requests
        assert storage.charges == before + charges_of(requests)

    async with manager.turn(message(conversation, user)) as state:
        assert (state.conversation.get("turns"), state.user.get("seen")) == (2, 2)


async def test_each_call_records_the_request_charges_the_server_sent(
    make_storage: MakeStorage, cosmos_server: CosmosTestServer
) -> None:
    """last_call holds one call's requests and RU; charges is their running total."""
    storage = make_storage()
    small, large, missing = new_key("small"), new_key("large"), new_key("missing")
    await storage.read([small])  # sets the container up
    start = storage.charges
    cosmos_server.reset_requests()

    await storage.write({small: WriteItem(b"{}"), large: WriteItem(b'{"s":"' + b"x" * 2500 + b'"}')})
    writes = cosmos_server.requests()
    assert storage.last_call == charges_of(writes)
    # the server's model: 5.7 RU per started KB written
    assert sorted(r.charge for r in writes) == [5.7, 17.1]

    cosmos_server.reset_requests()
    found = await storage.read([small, large, missing])
    assert set(found) == {small, large}
    reads = cosmos_server.requests()
    # 1 RU per started KB read, 1 RU for the absent key
    assert storage.last_call == RequestCharges(point_reads=3, request_units=1 + 3 + 1)
    assert storage.last_call == charges_of(reads)

    cosmos_server.reset_requests()
    assert [key async for key in storage.list_keys(small)] == [small]
    listing = cosmos_server.requests()
    assert storage.last_call == charges_of(listing)
    assert storage.last_call.queries >= 1

    cosmos_server.reset_requests()
    await storage.delete([small, missing])
    deletes = cosmos_server.requests()
    assert storage.last_call == charges_of(deletes) == RequestCharges(writes=2, request_units=5.7 + 1)

    total = charges_of(writes + reads + listing + deletes)
    assert storage.charges.requests == start.requests + total.requests
    assert round(storage.charges.request_units - start.request_units, 6) == round(total.request_units, 6)


async def test_concurrent_calls_each_see_their_own_charges(
    make_storage: MakeStorage, cosmos_server: CosmosTestServer
) -> None:
    """Charges come from each request's own response, so calls running at once never mix them up.

    last_call is set as a call returns, so reading it right after the await gives that call's figures.
    """
    storage = make_storage()
    sizes = {new_key(f"kb{kb}"): kb for kb in range(1, 9)}
    await storage.write(
        {key: WriteItem(b'{"s":"' + b"x" * (kb * 1024 - 600) + b'"}') for key, kb in sizes.items()}
    )
    start = storage.charges
    cosmos_server.reset_requests()

    async def read_one(key: str) -> RequestCharges:
        await storage.read([key])
        return storage.last_call

    for _ in range(3):
        seen = await asyncio.gather(*(read_one(key) for key in sizes))
        assert seen == [RequestCharges(point_reads=1, request_units=kb) for kb in sizes.values()]
    assert storage.charges == start + charges_of(cosmos_server.requests())
