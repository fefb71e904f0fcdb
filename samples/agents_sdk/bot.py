"""A counter agent on the Microsoft 365 Agents SDK whose state lives in turnstate.

The handler uses the SDK's own state API; turnstate commits it in one write when the turn succeeds,
merges concurrent turns (``count`` adds up), and drops a redelivered activity. ``python drive.py`` runs
it offline; ``serve()`` is the aiohttp endpoint a deployment runs.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from microsoft_agents.hosting.aiohttp import CloudAdapter, start_agent_process
from microsoft_agents.hosting.core import AgentApplication, TurnContext

from turnstate import FileStorage, StateManager
from turnstate.integrations.agents import AgentsStorage, AgentTurnState, TurnStateMiddleware


class LocalOnly:
    """No Azure Bot registration: unauthenticated local traffic only. In production pass an
    MsalConnectionManager (microsoft-agents-authentication-msal) instead."""

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError("this sample runs unauthenticated; configure an MsalConnectionManager")


def make_agent(state_dir: str) -> tuple[CloudAdapter, AgentApplication[AgentTurnState]]:
    storage = FileStorage(state_dir)
    manager = StateManager(storage, ttl={"conversation": 7 * 86400}, merge={"conversation.count": "sum"})
    adapter = CloudAdapter(connection_manager=LocalOnly())  # type: ignore[arg-type]
    adapter.use(TurnStateMiddleware(manager))
    app = AgentApplication[AgentTurnState](
        storage=AgentsStorage(storage, ttl={"auth/": 900}),  # sign-in flows expire after 15 minutes
        connection_manager=LocalOnly(),
        turn_state_factory=AgentTurnState,
        start_typing_timer=False,
    )

    @app.activity("message")
    async def on_message(context: TurnContext, state: AgentTurnState) -> None:
        count = state.conversation.get_value("count", lambda: 0) + 1
        state.conversation.set_value("count", count)
        name = state.user.get_value("name") or context.activity.from_property.name
        state.user.set_value("name", name)
        await context.send_activity(f"Turn #{count}, {name}")

    return adapter, app


def serve(state_dir: str = "./agent-state", port: int = 3978) -> None:
    adapter, app = make_agent(state_dir)

    async def messages(request: web.Request) -> web.StreamResponse:
        return await start_agent_process(request, app, adapter) or web.Response(status=202)

    server = web.Application()
    server.router.add_post("/api/messages", messages)
    web.run_app(server, host="127.0.0.1", port=port)


if __name__ == "__main__":
    serve()
