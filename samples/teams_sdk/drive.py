"""Drive the app in bot.py with scripted activities, offline: python samples/teams_sdk/drive.py

Activities go to the app's messaging endpoint in process; its replies come back to a small local
"connector" on a loopback port, standing in for the Teams service.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile

import httpx
from aiohttp import web
from bot import make_app

SCRIPT = [("m1", "29:ann", "Ann", "hello"), ("m2", "29:ann", "Ann", "again"),
          ("m2", "29:ann", "Ann", "again (redelivered)"), ("m3", "29:bob", "Bob", "hi")]  # fmt: skip


async def main(state_dir: str) -> None:
    replies: list[str] = []

    async def reply(request: web.Request) -> web.Response:
        replies.append((await request.json()).get("text", ""))
        return web.json_response({"id": "r"})

    connector = web.Application()
    connector.router.add_post("/v3/conversations/{c}/activities", reply)
    runner = web.AppRunner(connector)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    service_url = f"http://127.0.0.1:{runner.addresses[0][1]}/"

    app = make_app(state_dir, dangerously_allow_unauthenticated_requests=True, state=False)
    await app.initialize()
    endpoint = httpx.ASGITransport(app=app.server.adapter.app)
    async with httpx.AsyncClient(transport=endpoint, base_url="http://app.local") as client:
        for activity_id, user, name, text in SCRIPT:
            before = len(replies)
            await client.post("/api/messages", json={
                "type": "message", "id": activity_id, "text": text, "channelId": "msteams",
                "serviceUrl": service_url, "conversation": {"id": "19:demo", "tenantId": "t-1"},
                "from": {"id": user, "name": name}, "recipient": {"id": "28:app"},
            })  # fmt: skip
            print(f"{name}: {text} -> {' | '.join(replies[before:]) or '(already handled: no reply)'}")
    await runner.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--state-dir", default=None)
    args = parser.parse_args()
    asyncio.run(main(args.state_dir or tempfile.mkdtemp(prefix="teams-state-")))
