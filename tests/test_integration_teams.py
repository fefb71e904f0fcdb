"""turnstate inside the Teams SDK (microsoft-teams-apps 2.x): a real App, its messaging endpoint called in
process, replies posted to a local connector."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from microsoft_teams.apps import ActivityContext, App

from tests.support.activities import message
from tests.support.backends import Backend
from tests.support.teams_app import Connector, TeamsBot
from turnstate import MemoryStorage, StateError, StateManager
from turnstate.integrations.teams import state_of


@pytest.fixture
async def connector() -> AsyncIterator[Connector]:
    server = Connector()
    await server.start()
    yield server
    await server.stop()


async def count_of(manager: StateManager) -> Any:
    async with manager.turn(message("peek", activity_id=None)) as state:
        return state.conversation.get("count")


async def test_an_app_keeps_state_across_turns(connector: Connector) -> None:
    bot = TeamsBot(StateManager(MemoryStorage()), connector)
    assert await bot.send(message()) == 200
    assert await bot.send(message()) == 200
    assert connector.texts() == ["Turn #1", "Turn #2"]
    async with bot.manager.turn(message("peek", activity_id=None)) as state:
        assert state.conversation.get("count") == 2
        assert state.user.get("name") == "Ann"


async def test_a_failed_handler_commits_nothing(connector: Connector) -> None:
    bot = TeamsBot(StateManager(MemoryStorage()), connector)
    await bot.send(message())
    assert await bot.send(message("crash")) == 500
    assert await count_of(bot.manager) == 1
    assert bot.manager.stats["discards"] == 1


async def test_a_redelivered_activity_is_handled_once(connector: Connector) -> None:
    duplicates: list[str] = []

    async def on_duplicate(ctx: ActivityContext[Any]) -> None:
        duplicates.append(str(ctx.activity.id))

    bot = TeamsBot(StateManager(MemoryStorage()), connector, on_duplicate=on_duplicate)
    activity = message(activity_id="teams-1")
    await bot.send(activity)
    await bot.send(activity)
    assert bot.handled == ["teams-1"] and duplicates == ["teams-1"]
    assert connector.texts() == ["Turn #1"]


async def test_two_instances_count_every_message_and_apply_a_redelivery_once(
    backend: Backend, connector: Connector
) -> None:
    first, second = (TeamsBot(StateManager(backend.open()), connector) for _ in range(2))
    await asyncio.gather(*[(first if i % 2 else second).send(message(f"m{i}")) for i in range(10)])
    assert await count_of(first.manager) == 10
    again = message(activity_id="teams-2")
    await first.send(again)
    await second.send(again)
    assert second.handled.count("teams-2") == 0
    both = message(activity_id="teams-3")
    await asyncio.gather(first.send(both), second.send(both))
    assert await count_of(first.manager) == 12


async def test_state_of_without_the_middleware_is_a_clear_error(connector: Connector) -> None:
    app = App(dangerously_allow_unauthenticated_requests=True, state=False)
    errors: list[Exception] = []

    @app.on_message
    async def on_message(ctx: ActivityContext[Any]) -> None:
        try:
            state_of(ctx)
        except StateError as exc:
            errors.append(exc)

    bot = TeamsBot(StateManager(MemoryStorage()), connector)
    bot.app = app
    await bot.send(message())
    assert len(errors) == 1 and "app.use(TurnStateMiddleware" in str(errors[0])
