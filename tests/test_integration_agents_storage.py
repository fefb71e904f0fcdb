"""AgentsStorage: the Agents SDK's Storage contract over every turnstate storage (real servers), with
TTL per key prefix, field encryption, and last-writer-wins writes."""

from __future__ import annotations

import time
from typing import Any

import msgspec
import pytest
from microsoft_agents.activity import Activity
from microsoft_agents.hosting.core import ConversationState, StoreItem, TurnContext
from microsoft_agents.hosting.core import MemoryStorage as SdkMemoryStorage
from microsoft_agents.hosting.core.storage import Storage as SdkStorage

from tests.support.activities import message
from tests.support.agents_app import Agent
from tests.support.backends import Backend
from turnstate import (
    CorruptDocumentError,
    DecryptionError,
    FieldEncryption,
    InvalidItemError,
    InvalidKeyError,
    KeyRing,
    MemoryStorage,
    StateManager,
    WriteItem,
)
from turnstate.integrations.agents import AgentsStorage


class Flow(StoreItem):
    """A StoreItem like the SDK's own (sign-in flow state, conversation references)."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    def store_item_to_json(self) -> dict[str, Any]:
        return dict(self.data)

    @staticmethod
    def from_json_to_store_item(json_data: Any) -> Flow:
        return Flow(dict(json_data))


async def contract(storage: SdkStorage) -> None:
    """What the SDK's storages do, checked the same way on the SDK's MemoryStorage and on AgentsStorage."""
    assert await storage.read(["auth/msteams/u1/graph"], target_cls=Flow) == {}
    await storage.write({"auth/msteams/u1/graph": Flow({"tag": "begin", "n": 1})})
    await storage.write({"msteams/conversations/c1": Flow({"count": 2, "nested": {"a": [1, "x"]}})})
    found = await storage.read(
        ["auth/msteams/u1/graph", "msteams/conversations/c1", "absent"], target_cls=Flow
    )
    assert sorted(found) == ["auth/msteams/u1/graph", "msteams/conversations/c1"]
    assert found["msteams/conversations/c1"].data == {"count": 2, "nested": {"a": [1, "x"]}}
    await storage.write({"auth/msteams/u1/graph": Flow({"tag": "continue"})})  # replaced whole
    again = await storage.read(["auth/msteams/u1/graph"], target_cls=Flow)
    assert again["auth/msteams/u1/graph"].data == {"tag": "continue"}
    await storage.delete(["auth/msteams/u1/graph", "never-written"])
    assert await storage.read(["auth/msteams/u1/graph"], target_cls=Flow) == {}


async def test_the_sdk_memory_storage_meets_the_contract_the_tests_check() -> None:
    await contract(SdkMemoryStorage())


async def test_agents_storage_meets_the_sdk_storage_contract(backend: Backend) -> None:
    storage = AgentsStorage(backend.open())
    await contract(storage)
    assert await storage.read([], target_cls=Flow) == {}
    await storage.write({})
    await storage.delete([])


async def test_last_writer_wins_between_instances(backend: Backend) -> None:
    first, second = AgentsStorage(backend.open()), AgentsStorage(backend.open())
    await first.write({"k": Flow({"v": 0})})
    a = (await first.read(["k"], target_cls=Flow))["k"]
    b = (await second.read(["k"], target_cls=Flow))["k"]
    a.data["v"], b.data["v"] = 1, 2
    await first.write({"k": a})
    await second.write({"k": b})  # no error: the SDK's storages have no versions to compare
    assert (await first.read(["k"], target_cls=Flow))["k"].data == {"v": 2}


async def test_ttl_is_set_per_key_prefix(backend: Backend) -> None:
    raw = backend.open()
    storage = AgentsStorage(raw, ttl={"auth/": 900, "auth/msteams/keep/": None, "": 86400})
    await storage.write(
        {"auth/msteams/u1/graph": Flow({}), "auth/msteams/keep/x": Flow({}), "msteams/users/u1": Flow({})}
    )
    items = await raw.read(["auth/msteams/u1/graph", "auth/msteams/keep/x", "msteams/users/u1"])
    now = time.time()
    flow_expiry = items["auth/msteams/u1/graph"].expires_at
    user_expiry = items["msteams/users/u1"].expires_at
    assert flow_expiry is not None and now < flow_expiry <= now + 900
    assert user_expiry is not None and now + 900 < user_expiry <= now + 86400
    assert items["auth/msteams/keep/x"].expires_at is None
    assert storage.ttl_for("other") == 86400


async def test_declared_fields_are_encrypted_at_rest(backend: Backend) -> None:
    ring = KeyRing({"k1": KeyRing.generate_key()})
    storage = AgentsStorage(backend.open(), encryption=FieldEncryption(["item.email", "item.*.phone"], ring))
    item = Flow({"email": "ann@example.com", "contact": {"phone": "+1 555 0100"}, "plain": 1})
    await storage.write({"msteams/users/u1": item})
    assert b"ann@example.com" not in await backend.raw_bytes()
    assert b"555 0100" not in await backend.raw_bytes()
    assert (await storage.read(["msteams/users/u1"], target_cls=Flow))["msteams/users/u1"].data == item.data

    other = AgentsStorage(
        backend.open(), encryption=FieldEncryption(["item.email"], KeyRing({"k2": KeyRing.generate_key()}))
    )
    with pytest.raises(DecryptionError, match="'msteams/users/u1'") as caught:
        await other.read(["msteams/users/u1"], target_cls=Flow)
    assert "ann@example.com" not in str(caught.value)


async def test_bad_input_is_a_typed_error_naming_the_key() -> None:
    raw = MemoryStorage()
    storage = AgentsStorage(raw)
    with pytest.raises(InvalidItemError, match=r"'k'.*StoreItem"):
        await storage.write({"k": {"not": "an item"}})  # type: ignore[dict-item]
    with pytest.raises(InvalidKeyError):
        await storage.write({"": Flow({})})
    await raw.write({"broken": WriteItem(b"[1, 2]")})
    with pytest.raises(CorruptDocumentError, match="'broken'"):
        await storage.read(["broken"], target_cls=Flow)
    with pytest.raises(TypeError, match="target_cls"):
        await storage.read(["k"])
    with pytest.raises(ValueError, match="'auth/'"):
        AgentsStorage(raw, ttl={"auth/": 0})
    with pytest.raises(ValueError, match="under 'item'"):
        AgentsStorage(raw, encryption=FieldEncryption(["user.email"], KeyRing({"k": KeyRing.generate_key()})))
    with pytest.raises(TypeError, match="turnstate Storage"):
        AgentsStorage(SdkMemoryStorage())  # type: ignore[arg-type]


async def test_the_sdk_agent_state_runs_over_it_and_stores_what_the_sdk_memory_storage_stores() -> None:
    agent = Agent(StateManager(MemoryStorage()))
    raw = MemoryStorage()
    ours, theirs = AgentsStorage(raw), SdkMemoryStorage()
    for storage in (ours, theirs):
        for text in ("one", "two"):
            context = TurnContext(agent.adapter, Activity.model_validate(message(text)))
            state = ConversationState(storage)
            await state.load(context)
            count = state.get_value("count", lambda: 0)
            state.set_value("count", count + 1)
            state.set_value("last", text)
            await state.save(context)
    key = "msteams/conversations/19:conv-1@thread.v2"
    stored = (await raw.read([key]))[key].value
    expected = (await theirs.read([key], target_cls=Flow))[key].data
    assert msgspec.json.decode(stored) == expected == {"count": 2, "last": "two"}
