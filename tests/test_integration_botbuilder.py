"""turnstate inside the Bot Framework SDK (botbuilder-core), driven through its own TestAdapter."""

from __future__ import annotations

import pytest
from botbuilder.core import TurnContext
from botbuilder.core.adapters import TestAdapter
from botbuilder.schema import Activity, ChannelAccount, ConversationAccount

from turnstate import MemoryStorage, StateError, StateManager
from turnstate.integrations.botbuilder import STATE_KEY, TurnStateMiddleware, state_of


def make_adapter(manager: StateManager, **options: object) -> tuple[TestAdapter, list[str]]:
    handled: list[str] = []

    async def bot(turn_context: TurnContext) -> None:
        state = state_of(turn_context)
        handled.append(str(turn_context.activity.id))
        if turn_context.activity.text == "crash":
            state.conversation.set("count", -1)
            raise RuntimeError("handler failed")
        count = state.conversation.incr("count")
        name = state.user.get("name") or turn_context.activity.from_property.name
        state.user.set("name", name)
        await turn_context.send_activity(f"Turn #{count}, {name}")

    adapter = TestAdapter(bot)
    adapter.use(TurnStateMiddleware(manager, **options))  # type: ignore[arg-type]
    return adapter, handled


def activity(text: str, activity_id: str, user: str = "u-1") -> Activity:
    return Activity(
        type="message",
        id=activity_id,
        text=text,
        channel_id="msteams",
        conversation=ConversationAccount(id="19:conv", tenant_id="t-1"),
        from_property=ChannelAccount(id=user, name=user.upper()),
        recipient=ChannelAccount(id="28:bot"),
    )


async def test_state_persists_across_turns_in_a_botbuilder_pipeline() -> None:
    storage = MemoryStorage()
    adapter, _ = make_adapter(StateManager(storage))
    await adapter.test("hello", "Turn #1, user")
    flow = await adapter.test("again", "Turn #2, user")
    assert flow is not None
    keys = sorted([k async for k in storage.list_keys()])
    assert [k.split("/")[0] for k in keys] == ["conversation", "user"]


async def test_botbuilder_activities_are_keyed_by_their_ids() -> None:
    storage = MemoryStorage()
    adapter, _ = make_adapter(StateManager(storage))
    await adapter.receive_activity(activity("hi", "a-1"))
    await adapter.receive_activity(activity("hi", "a-2", user="u-2"))
    keys = sorted([k async for k in storage.list_keys()])
    assert keys == [
        "conversation/channel=msteams/tenant=t-1/bot=28:bot/conversation=19:conv",
        "user/channel=msteams/tenant=t-1/bot=28:bot/user=u-1",
        "user/channel=msteams/tenant=t-1/bot=28:bot/user=u-2",
    ]
    async with StateManager(storage).turn(activity("peek", "a-3")) as state:
        assert state.conversation.get("count") == 2


async def test_a_failed_turn_commits_nothing() -> None:
    manager = StateManager(MemoryStorage())
    adapter, _ = make_adapter(manager)
    await adapter.receive_activity(activity("hi", "a-1"))
    with pytest.raises(RuntimeError, match="handler failed"):
        await adapter.receive_activity(activity("crash", "a-2"))
    async with manager.turn(activity("peek", "a-3")) as state:
        assert state.conversation.get("count") == 1


async def test_a_redelivered_activity_is_not_handled_twice() -> None:
    duplicates: list[str] = []

    async def on_duplicate(turn_context: TurnContext) -> None:
        duplicates.append(str(turn_context.activity.id))

    manager = StateManager(MemoryStorage())
    adapter, handled = make_adapter(manager, on_duplicate=on_duplicate)
    await adapter.receive_activity(activity("hi", "teams-1"))
    await adapter.receive_activity(activity("hi", "teams-1"))
    assert handled == ["teams-1"] and duplicates == ["teams-1"]
    assert manager.stats["duplicates"] == 1


async def test_state_of_without_the_middleware_is_a_clear_error() -> None:
    async def bot(turn_context: TurnContext) -> None:
        state_of(turn_context)

    adapter = TestAdapter(bot)
    with pytest.raises(StateError, match="TurnStateMiddleware"):
        await adapter.receive_activity(activity("hi", "x"))
    assert STATE_KEY == "turnstate.state"
