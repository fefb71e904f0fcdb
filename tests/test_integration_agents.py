"""turnstate inside the Microsoft 365 Agents SDK: AgentApplication and ActivityHandler agents on a
real CloudAdapter, run in process with the expect-replies delivery mode."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from microsoft_agents.activity import Activity
from microsoft_agents.hosting.core import ActivityHandler, StoreItem, TurnContext
from microsoft_agents.hosting.core.authorization import ClaimsIdentity

from tests.support.activities import message
from tests.support.agents_app import Agent, counting_agent
from tests.support.backends import Backend
from turnstate import MemoryStorage, Scope, StateError, StateManager, UnknownScopeError
from turnstate.integrations.agents import AgentsStorage, AgentTurnState, state_of


async def stored(manager: StateManager, path: str, **ids: Any) -> Any:
    async with manager.turn(message("peek", activity_id=None, **ids)) as state:
        return state.get_value(path)


async def test_an_application_keeps_its_state_across_turns_with_the_sdk_api() -> None:
    agent = counting_agent(StateManager(MemoryStorage()))
    assert await agent.send(message()) == ["Turn #1"]
    assert await agent.send(message()) == ["Turn #2"]
    assert await stored(agent.manager, "conversation.count") == 2
    assert await stored(agent.manager, "user.name") == "Ann"


async def test_scopes_answer_to_sdk_class_names_and_turnstate_names() -> None:
    agent = Agent(StateManager(MemoryStorage()))
    seen: dict[str, Any] = {}

    @agent.app.activity("message")
    async def on_message(context: TurnContext, state: AgentTurnState) -> None:
        state.set_value("conversation.topic", "billing")
        seen["sdk"] = state.get_value("ConversationState.topic")
        state.set_value("UserState.profile.email", "ann@example.com")
        seen["user"] = state.user.get_value("profile")
        state.set_value("note", "temp only")
        seen["temp"] = state.temp.get_value("note")
        seen["private"] = state.private.get_value("x", lambda: 5)
        with pytest.raises(UnknownScopeError, match="'nope'"):
            state.get_value("nope.x")

    await agent.send(message())
    assert seen == {
        "sdk": "billing",
        "user": {"email": "ann@example.com"},
        "temp": "temp only",
        "private": 5,
    }
    assert await stored(agent.manager, "user.profile.email") == "ann@example.com"
    assert await stored(agent.manager, "private.x") == 5


class Profile(StoreItem):
    def __init__(self, name: str = "", visits: int = 0) -> None:
        self.name = name
        self.visits = visits

    def store_item_to_json(self) -> dict[str, Any]:
        return {"name": self.name, "visits": self.visits}

    @staticmethod
    def from_json_to_store_item(json_data: Any) -> Profile:
        return Profile(json_data["name"], json_data["visits"])


async def test_store_items_are_stored_as_they_are_when_the_turn_saves() -> None:
    agent = Agent(StateManager(MemoryStorage()))

    @agent.app.activity("message")
    async def on_message(context: TurnContext, state: AgentTurnState) -> None:
        profile = state.user.get_value("profile", lambda: Profile("Ann"), target_cls=Profile)
        profile.visits += 1  # changed after it was handed out: stored as it is when the turn saves
        await context.send_activity(f"{profile.name} visit {profile.visits}")

    assert await agent.send(message()) == ["Ann visit 1"]
    assert await agent.send(message()) == ["Ann visit 2"]
    assert await stored(agent.manager, "user.profile") == {"name": "Ann", "visits": 2}


def ticket_of(activity: Any) -> str | None:
    value = activity.get("value") if isinstance(activity, dict) else activity.value
    return (value or {}).get("ticket")


async def test_custom_scopes_and_the_turnstate_api_are_reachable() -> None:
    manager = StateManager(MemoryStorage(), scopes=[Scope("ticket", key=ticket_of)])
    agent = Agent(manager)

    @agent.app.activity("message")
    async def on_message(context: TurnContext, state: AgentTurnState) -> None:
        state.set_value("ticket.status", "open")
        state.turnstate.conversation.incr("events")

    await agent.send(message(value={"ticket": "T-1"}))
    assert await stored(manager, "ticket.status", value={"ticket": "T-1"}) == "open"
    assert await stored(manager, "conversation.events") == 1


async def test_a_failed_turn_commits_nothing_with_or_without_error_handlers() -> None:
    agent = counting_agent(StateManager(MemoryStorage()))
    await agent.send(message())
    replies = await agent.send(message("crash"))  # the adapter's error handler reports it
    assert replies == ["Exception caught : handler failed"]
    assert await stored(agent.manager, "conversation.count") == 1

    errors: list[str] = []

    @agent.app.error
    async def on_error(context: TurnContext, error: Exception) -> None:
        errors.append(str(error))

    await agent.send(message("crash"))  # the application swallows it and never saves its state
    assert errors == ["handler failed"]
    assert await stored(agent.manager, "conversation.count") == 1
    assert agent.manager.stats["discards"] == 2


async def test_a_redelivered_activity_is_handled_once() -> None:
    duplicates: list[str] = []

    async def on_duplicate(context: TurnContext) -> None:
        duplicates.append(str(context.activity.id))

    agent = counting_agent(StateManager(MemoryStorage()), on_duplicate=on_duplicate)
    activity = message(activity_id="teams-1")
    assert await agent.send(activity) == ["Turn #1"]
    assert await agent.send(activity) == []
    assert agent.handled == ["teams-1"] and duplicates == ["teams-1"]
    assert await stored(agent.manager, "conversation.count") == 1


def two_instances(backend: Backend) -> tuple[Agent, Agent]:
    """Two agents, each with its own manager over its own storage object on the same data."""
    merge = {"conversation.count": "sum"}
    return tuple(  # type: ignore[return-value]
        counting_agent(StateManager(backend.open(), merge=merge)) for _ in range(2)
    )


async def test_two_instances_count_every_concurrent_message(backend: Backend) -> None:
    first, second = two_instances(backend)
    sends = [(first if i % 2 else second).send(message(f"m{i}")) for i in range(12)]
    await asyncio.gather(*sends)
    assert await stored(first.manager, "conversation.count") == 12


async def test_two_instances_apply_a_redelivery_once_sequential_and_concurrent(backend: Backend) -> None:
    first, second = two_instances(backend)
    activity = message(activity_id="teams-7")
    await first.send(activity)
    await second.send(activity)  # the channel retried on the other instance
    assert second.handled == []
    twice = message(activity_id="teams-8")
    await asyncio.gather(first.send(twice), second.send(twice))
    assert await stored(first.manager, "conversation.count") == 2


class EchoHandler(ActivityHandler):
    async def on_message_activity(self, turn_context: TurnContext) -> None:
        count = state_of(turn_context).conversation.incr("count")
        await turn_context.send_activity(f"Turn #{count}")


async def test_an_activity_handler_agent_reaches_the_state_through_the_middleware() -> None:
    agent = Agent(StateManager(MemoryStorage()))
    handler = EchoHandler()
    replies = []
    for _ in range(2):
        act = Activity.model_validate({**message(), "deliveryMode": "expectReplies"})
        response = await agent.adapter.process_activity(ClaimsIdentity(), act, handler.on_turn)
        assert response is not None and isinstance(response.body, dict)
        replies += [r["text"] for r in response.body["activities"]]
    assert replies == ["Turn #1", "Turn #2"]


async def test_state_without_the_middleware_is_a_clear_error() -> None:
    bare = counting_agent(StateManager(MemoryStorage()), with_middleware=False)
    (reply,) = await bare.send(message())  # the adapter's error handler reports it
    assert "AgentTurnState needs TurnStateMiddleware on the adapter" in reply
    assert bare.handled == []
    with pytest.raises(StateError, match=r"adapter\.use"):
        state_of(TurnContext(bare.adapter, Activity.model_validate(message())))


async def test_proactive_references_live_in_agents_storage_and_proactive_turns_run_through_turnstate(
    backend: Backend,
) -> None:
    storage = backend.open()
    agent = Agent(StateManager(storage), proactive=AgentsStorage(storage, ttl={"proactive/": 3600}))

    @agent.app.activity("message")
    async def on_message(context: TurnContext, state: AgentTurnState) -> None:
        await agent.app.proactive.store_conversation(context)

    await agent.send(message())
    conversation = await agent.app.proactive.get_conversation("19:conv-1@thread.v2")
    assert conversation is not None
    assert conversation.conversation_reference.user.id == "29:user-1"
    (item,) = (await storage.read(["proactive/conversations/19:conv-1@thread.v2"])).values()
    assert item.expires_at is not None

    async def notify(context: TurnContext, state: AgentTurnState) -> None:
        state.conversation.set_value("notified", state.conversation.get_value("notified", lambda: 0) + 1)

    async def fail(context: TurnContext, state: AgentTurnState) -> None:
        state.conversation.set_value("notified", -1)
        raise RuntimeError("notification failed")

    await agent.app.proactive.continue_conversation(agent.adapter, "19:conv-1@thread.v2", notify)
    with pytest.raises(RuntimeError, match="notification failed"):
        await agent.app.proactive.continue_conversation(agent.adapter, "19:conv-1@thread.v2", fail)
    assert await stored(agent.manager, "conversation.notified") == 1
