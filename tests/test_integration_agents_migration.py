"""Moving an Agents SDK bot's stored state over: the SDK's keys served as they are by AgentsStorage, or its
conversation and user documents copied into turnstate's scopes."""

from __future__ import annotations

import re
from typing import Any

import msgspec
import pytest
from microsoft_agents.activity import Activity
from microsoft_agents.hosting.core import ConversationState, TurnContext

from tests.support.activities import message
from tests.support.agents_app import Agent, counting_agent
from turnstate import CorruptDocumentError, MemoryStorage, StateManager, WriteItem
from turnstate.integrations.agents import AgentsStorage, copy_agents_state, unwrap_cosmos_item

CONVERSATION = "msteams/conversations/19:conv-1@thread.v2"
USER = "msteams/users/29:user-1"


def sdk_stored_state() -> dict[str, Any]:
    """What an SDK bot left in its MemoryStorage: its ConversationState and UserState documents."""
    layout: dict[str, Any] = {
        CONVERSATION: {"count": 7, "topic": "billing", "a.b": 1},
        USER: {"name": "Ann"},
        "auth/msteams/29:user-1/graph": {"tag": "begin"},
    }
    return layout


async def test_agents_storage_serves_the_sdk_keys_as_they_are() -> None:
    raw = MemoryStorage()
    old = sdk_stored_state()
    await raw.write({key: WriteItem(msgspec.json.encode(doc)) for key, doc in old.items()})
    agent = Agent(StateManager(MemoryStorage()))
    context = TurnContext(agent.adapter, Activity.model_validate(message()))
    state = ConversationState(AgentsStorage(raw))  # the SDK's own state class, unchanged
    await state.load(context)
    assert state.get_value("count") == 7


async def test_copying_moves_conversation_and_user_state_into_turnstate_scopes() -> None:
    manager = StateManager(MemoryStorage())
    report = await copy_agents_state(sdk_stored_state(), manager, bot="28:bot-1", tenant="tenant-1")
    assert report.copied == [CONVERSATION, USER]
    assert report.skipped == ["auth/msteams/29:user-1/graph"]
    agent = counting_agent(manager)
    assert await agent.send(message()) == ["Turn #8"]  # the count the SDK bot left, carried on
    async with manager.turn(message("peek", activity_id=None)) as state:
        assert state.conversation.get("topic") == "billing"
        assert state.conversation.get("a\\.b") == 1
        assert state.user.get("name") == "Ann"


async def test_copying_again_keeps_what_turnstate_already_holds() -> None:
    manager = StateManager(MemoryStorage())
    old = sdk_stored_state()
    await copy_agents_state(old, manager, bot="28:bot-1", tenant="tenant-1")
    await counting_agent(manager).send(message())
    await copy_agents_state(old, manager, bot="28:bot-1", tenant="tenant-1")
    async with manager.turn(message("peek", activity_id=None)) as state:
        assert state.conversation.get("count") == 8


async def test_cosmos_items_of_the_sdk_are_unwrapped() -> None:
    items = [
        {"id": "msteams*conversations*19:conv-1@thread.v2", "realId": CONVERSATION, "document": {"count": 3}},
    ]
    manager = StateManager(MemoryStorage())
    report = await copy_agents_state(
        [unwrap_cosmos_item(i) for i in items], manager, bot="28:bot-1", tenant="tenant-1"
    )
    assert report.copied == [CONVERSATION]
    async with manager.turn(message("peek", activity_id=None)) as state:
        assert state.conversation.get("count") == 3
    with pytest.raises(CorruptDocumentError, match=r"'x'.*realId"):
        unwrap_cosmos_item({"id": "x", "document": {}})
    with pytest.raises(CorruptDocumentError, match=re.escape(repr(CONVERSATION))):
        await copy_agents_state({CONVERSATION: [1]}, manager)  # type: ignore[dict-item]
