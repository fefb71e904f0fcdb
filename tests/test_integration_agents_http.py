"""An Agents SDK agent with turnstate behind a real aiohttp server on a loopback port
(microsoft-agents-hosting-aiohttp), its replies posted to a local aiohttp "connector" server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from microsoft_agents.hosting.aiohttp import start_agent_process

from tests.support.activities import message
from tests.support.agents_app import Agent, counting_agent
from turnstate import FileStorage, StateManager


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"


class Connector:
    """The channel's side: receives the replies the agent posts to its service URL."""

    def __init__(self) -> None:
        self.replies: list[dict[str, Any]] = []
        self.app = web.Application()
        self.app.router.add_post("/v3/conversations/{conversation}/activities/{activity}", self.reply)
        self.app.router.add_post("/v3/conversations/{conversation}/activities", self.reply)

    async def reply(self, request: web.Request) -> web.Response:
        self.replies.append(await request.json())
        return web.json_response({"id": f"reply-{len(self.replies)}"})


@pytest.fixture
async def servers(tmp_path: Any) -> AsyncIterator[tuple[Agent, str, Connector, str]]:
    agent = counting_agent(StateManager(FileStorage(tmp_path / "state")))

    async def messages(request: web.Request) -> web.StreamResponse:
        response = await start_agent_process(request, agent.app, agent.adapter)
        return response if response is not None else web.Response(status=202)

    bot_app = web.Application()
    bot_app.router.add_post("/api/messages", messages)
    connector = Connector()
    bot_runner, bot_url = await serve(bot_app)
    connector_runner, connector_url = await serve(connector.app)
    yield agent, bot_url, connector, connector_url
    await bot_runner.cleanup()
    await connector_runner.cleanup()


async def test_an_http_round_trip_keeps_state_and_replies_through_the_connector(
    servers: tuple[Agent, str, Connector, str],
) -> None:
    agent, bot_url, connector, connector_url = servers
    async with aiohttp.ClientSession() as session:
        for _ in range(2):
            activity = message(serviceUrl=connector_url + "/")
            async with session.post(bot_url + "/api/messages", json=activity) as response:
                assert response.status == 202
        redelivered = message(activity_id="teams-9", serviceUrl=connector_url + "/")
        for _ in range(2):
            async with session.post(bot_url + "/api/messages", json=redelivered) as response:
                assert response.status == 202
        expect = message(serviceUrl=connector_url + "/", deliveryMode="expectReplies")
        async with session.post(bot_url + "/api/messages", json=expect) as response:
            body = await response.json()
    assert [r["text"] for r in connector.replies] == ["Turn #1", "Turn #2", "Turn #3"]
    assert [r["text"] for r in body["activities"]] == ["Turn #4"]
    async with agent.manager.turn(message("peek", activity_id=None)) as state:
        assert state.conversation.get("count") == 4
