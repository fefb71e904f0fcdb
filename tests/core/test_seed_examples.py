"""The Python examples of the TurnState guide, run as written (apart from imports) through the runtime."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from tests.support.activities import message
from turnstate import MemoryStorage, StateManager
from turnstate.runtime import Bot


def texts(replies: list[dict[str, object]]) -> list[object]:
    return [r.get("text") for r in replies]


async def test_turn_counter() -> None:
    bot = Bot()
    bot.use_state(MemoryStorage())

    @bot.on("message")
    async def on_message(ctx):  # type: ignore[no-untyped-def]
        count = (ctx.state.conversation.get("turnCount", int) or 0) + 1 if ctx.state else 0
        if ctx.state:
            ctx.state.conversation.set("turnCount", count)
        await ctx.send(f"Turn #{count}")

    assert [texts(await bot.process(message())) for _ in range(3)] == [["Turn #1"], ["Turn #2"], ["Turn #3"]]
    # another conversation counts on its own
    assert texts(await bot.process(message(conversation="19:other"))) == ["Turn #1"]


async def test_user_preferences_and_display_name() -> None:
    bot = Bot()
    bot.use_state(MemoryStorage())

    @bot.on("message")
    async def on_message(ctx):  # type: ignore[no-untyped-def]
        name = ctx.state.user.get("displayName", str) if ctx.state else None
        if not name:
            name = (ctx.activity.from_.name if ctx.activity.from_ else None) or "User"
            if ctx.state:
                ctx.state.user.set("displayName", name)
        await ctx.send(f"Hello, {name}!")

    @bot.on("message")
    async def save_prefs(ctx):  # type: ignore[no-untyped-def]
        if ctx.state:
            prefs = ctx.state.user.get("preferences", dict) or {}
            prefs["language"] = "en"
            prefs["timezone"] = "UTC"
            ctx.state.user.set("preferences", prefs)
            await ctx.send("Preferences saved!")

    assert texts(await bot.process(message(name="Ann"))) == ["Hello, Ann!", "Preferences saved!"]
    # the user scope follows the user into another conversation, keeping the first name seen
    replies = await bot.process(message(conversation="19:elsewhere", name="Annie"))
    assert texts(replies) == ["Hello, Ann!", "Preferences saved!"]

    @bot.on("event")
    async def show(ctx):  # type: ignore[no-untyped-def]
        await ctx.send(str(ctx.state.user.get("preferences")))

    assert texts(await bot.process(message(type="event"))) == [str({"language": "en", "timezone": "UTC"})]


async def test_temp_data_from_middleware_to_handler() -> None:
    bot = Bot()
    bot.use_state(MemoryStorage())
    seen: list[str] = []

    @bot.use()
    async def store_request_id(ctx, next):  # type: ignore[no-untyped-def]
        if ctx.state:
            ctx.state.temp.set("requestId", str(uuid.uuid4()))
        await next()

    @bot.on("message")
    async def on_message(ctx):  # type: ignore[no-untyped-def]
        request_id = ctx.state.temp.get("requestId", str) if ctx.state else "unknown"
        seen.append(request_id)
        await ctx.send(f"Request: {request_id}")

    first = texts(await bot.process(message()))
    second = texts(await bot.process(message()))
    assert first == [f"Request: {seen[0]}"] and second == [f"Request: {seen[1]}"]
    assert seen[0] != seen[1]
    assert uuid.UUID(seen[0])


async def test_temp_is_never_stored() -> None:
    storage = MemoryStorage()
    manager = StateManager(storage)
    async with manager.turn(message()) as state:
        state.temp.set("scratch", object())  # temp holds any object, it is never encoded
        state.set_value("foo", "bar")
        assert state.temp.get("foo") == "bar"
    assert len(storage) == 0
    async with manager.turn(message()) as state:
        assert state.get_value("foo") is None


async def test_atomic_semantics_crash_discards_changes() -> None:
    bot = Bot()
    bot.use_state(MemoryStorage())

    @bot.on("message")
    async def on_message(ctx):  # type: ignore[no-untyped-def]
        if ctx.state:
            ctx.state.conversation.set("count", 42)
        if ctx.activity.text == "crash":
            raise Exception("Simulated error")
        await ctx.send("OK")

    @bot.on("event")
    async def report(ctx):  # type: ignore[no-untyped-def]
        await ctx.send(f"count={ctx.state.conversation.get('count')}")

    with pytest.raises(Exception, match="Simulated error"):
        await bot.process(message("crash"))
    assert texts(await bot.process(message(type="event"))) == ["count=None"]
    assert texts(await bot.process(message("fine"))) == ["OK"]
    assert texts(await bot.process(message(type="event"))) == ["count=42"]


async def test_path_syntax_equivalences() -> None:
    bot = Bot()
    bot.use_state(MemoryStorage())

    @bot.on("message")
    async def on_message(ctx):  # type: ignore[no-untyped-def]
        ctx.state.conversation.set("count", 5)
        ctx.state.set_value("conversation.count", 6)
        ctx.state.set_value("foo", "bar")
        ctx.state.set_value("user.name", "Ann")
        ctx.state.set_value("temp.requestId", "r-1")
        assert ctx.state.temp.get("foo") == "bar"
        assert ctx.state.get_value("temp.requestId") == ctx.state.temp.get("requestId") == "r-1"
        assert ctx.state.get_value("conversation.count") == ctx.state.conversation.get("count") == 6
        assert ctx.state.get_value("user.name") == ctx.state.user.get("name") == "Ann"
        await ctx.send("ok")

    assert texts(await bot.process(message())) == ["ok"]


async def test_last_message_timestamp() -> None:
    bot = Bot()
    bot.use_state(MemoryStorage())

    @bot.on("message")
    async def on_message(ctx):  # type: ignore[no-untyped-def]
        timestamp = datetime.now(UTC).isoformat()
        if ctx.state:
            ctx.state.conversation.set("lastMessageTime", timestamp)
        await ctx.send(f"Logged at {timestamp}")

    @bot.on("event")
    async def read(ctx):  # type: ignore[no-untyped-def]
        await ctx.send(str(ctx.state.conversation.get("lastMessageTime", datetime)))

    await bot.process(message())
    stamp = texts(await bot.process(message(type="event")))[0]
    assert isinstance(stamp, str) and datetime.fromisoformat(stamp).tzinfo is not None


async def test_without_use_state_ctx_state_is_none() -> None:
    bot = Bot()

    @bot.on("message")
    async def on_message(ctx):  # type: ignore[no-untyped-def]
        count = (ctx.state.conversation.get("turnCount", int) or 0) + 1 if ctx.state else 0
        await ctx.send(f"Turn #{count} state={ctx.state}")

    assert texts(await bot.process(message())) == ["Turn #0 state=None"]
