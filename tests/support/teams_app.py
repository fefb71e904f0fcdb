"""Teams SDK apps for the integration tests: a real ``App`` whose FastAPI endpoint is called in process
(httpx's ASGI transport), posting its replies to a local aiohttp "connector" on a loopback port."""

from __future__ import annotations

from typing import Any

import httpx
from aiohttp import web
from microsoft_teams.apps import ActivityContext, App

from turnstate import StateManager
from turnstate.integrations.teams import TurnStateMiddleware, state_of


class Connector:
    """The channel's side: receives the replies apps post to their service URL."""

    def __init__(self) -> None:
        self.replies: list[dict[str, Any]] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v3/conversations/{conversation}/activities/{activity}", self._reply)
        app.router.add_post("/v3/conversations/{conversation}/activities", self._reply)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}/"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _reply(self, request: web.Request) -> web.Response:
        self.replies.append(await request.json())
        return web.json_response({"id": f"reply-{len(self.replies)}"})

    def texts(self) -> list[str]:
        return [r.get("text", "") for r in self.replies if r.get("type") == "message"]


class TeamsBot:
    """One Teams app instance with TurnStateMiddleware, counting messages per conversation."""

    def __init__(self, manager: StateManager, connector: Connector, **middleware: Any) -> None:
        self.manager = manager
        self.connector = connector
        self.handled: list[str] = []
        self.app = App(dangerously_allow_unauthenticated_requests=True, state=False)
        self.app.use(TurnStateMiddleware(manager, **middleware))

        @self.app.on_message
        async def on_message(ctx: ActivityContext[Any]) -> None:
            self.handled.append(str(ctx.activity.id))
            state = state_of(ctx)
            if ctx.activity.text == "crash":
                state.conversation.set("count", -1)
                raise RuntimeError("handler failed")
            count = state.conversation.incr("count")
            state.user.set("name", ctx.activity.from_.name)
            await ctx.send(f"Turn #{count}")

    async def send(self, activity: dict[str, Any]) -> int:
        """Post ``activity`` to the app's messaging endpoint; the HTTP status."""
        if not getattr(self, "_initialized", False):
            await self.app.initialize()
            self._initialized = True
        transport = httpx.ASGITransport(app=self.app.server.adapter.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://teams.test") as client:
            response = await client.post("/api/messages", json={**activity, "serviceUrl": self.connector.url})
        return response.status_code
