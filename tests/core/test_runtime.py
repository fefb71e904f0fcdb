"""The reference runtime: middleware chain, handlers, replies."""

from __future__ import annotations

import pytest

from tests.support.activities import message
from turnstate import Activity
from turnstate.runtime import Bot, TurnContext


async def test_middleware_runs_in_order_around_handlers() -> None:
    bot = Bot()
    order: list[str] = []

    async def first(ctx: TurnContext, next) -> None:  # type: ignore[no-untyped-def]
        order.append("first in")
        await next()
        order.append("first out")

    bot.use(first)

    @bot.use()
    async def second(ctx, next):  # type: ignore[no-untyped-def]
        order.append("second")
        await next(ctx)

    @bot.on("message")
    async def handler(ctx):  # type: ignore[no-untyped-def]
        order.append("message")

    @bot.on("*")
    async def every(ctx):  # type: ignore[no-untyped-def]
        order.append("any")

    await bot.process(message())
    assert order == ["first in", "second", "message", "any", "first out"]


async def test_middleware_can_short_circuit() -> None:
    bot = Bot()
    handled: list[bool] = []

    @bot.use
    async def gate(ctx, next):  # type: ignore[no-untyped-def]
        if ctx.activity.text != "blocked":
            await next()

    @bot.on("message")
    async def handler(ctx):  # type: ignore[no-untyped-def]
        handled.append(True)

    await bot.process(message("blocked"))
    await bot.process(message("ok"))
    assert handled == [True]


async def test_next_twice_is_an_error() -> None:
    bot = Bot()

    @bot.use
    async def twice(ctx, next):  # type: ignore[no-untyped-def]
        await next()
        await next()

    with pytest.raises(RuntimeError, match="twice"):
        await bot.process(message())


async def test_send_builds_routed_replies() -> None:
    bot = Bot()

    @bot.on("message")
    async def handler(ctx):  # type: ignore[no-untyped-def]
        assert ctx.activity.from_.name == "Ann"
        assert ctx.activity.conversation.id == "19:conv-1@thread.v2"
        await ctx.send("plain")
        await ctx.send(Activity(type="typing"))
        await ctx.send({"type": "message", "text": "from dict", "locale": "en-US"})

    replies = await bot.process(message(activity_id="in-1"))
    assert [r["type"] for r in replies] == ["message", "typing", "message"]
    first = replies[0]
    assert first["text"] == "plain"
    assert first["replyToId"] == "in-1"
    assert first["from"]["id"] == "28:bot-1" and first["recipient"]["id"] == "29:user-1"
    assert first["conversation"]["id"] == "19:conv-1@thread.v2"
    assert replies[2]["locale"] == "en-US"


async def test_send_rejects_other_types() -> None:
    bot = Bot()

    @bot.on("message")
    async def handler(ctx):  # type: ignore[no-untyped-def]
        await ctx.send(42)

    with pytest.raises(TypeError, match="send"):
        await bot.process(message())


async def test_invalid_activity_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="activity"):
        await Bot().process({"type": "message", "conversation": "not an object"})


async def test_unknown_activity_fields_are_ignored() -> None:
    bot = Bot()
    await bot.process(message(somethingNew={"x": 1}))
