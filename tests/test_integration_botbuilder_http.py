"""An HTTP round trip: a Bot Framework activity POSTed to a real aiohttp app hosting the sample bot on
botbuilder's CloudAdapter (authentication disabled), replies received by a local "connector" server."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from aiohttp import ClientSession, web
from aiohttp.test_utils import TestServer
from botbuilder.integration.aiohttp import CloudAdapter, ConfigurationBotFrameworkAuthentication

from turnstate import FileStorage
from turnstate.integrations.botbuilder import BotBuilderStorage

_SPEC = importlib.util.spec_from_file_location(
    "botbuilder_dialogs_sample_http",
    Path(__file__).parent.parent / "samples" / "botbuilder_dialogs" / "bot.py",
)
assert _SPEC is not None and _SPEC.loader is not None
sample: Any = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(sample)


class AnonymousConfig:
    """No app id or password: botbuilder then accepts unauthenticated requests and sends unsigned replies."""

    APP_ID = ""
    APP_PASSWORD = ""


def activity(activity_id: str, text: str, service_url: str) -> dict[str, Any]:
    return {
        "type": "message",
        "id": activity_id,
        "text": text,
        "channelId": "msteams",
        "serviceUrl": service_url,
        "conversation": {"id": "19:http"},
        "from": {"id": "u-1", "name": "Ada"},
        "recipient": {"id": "28:bot"},
    }


async def test_activities_posted_over_http_run_the_dialog_and_reply_through_the_connector(
    tmp_path: Path,
) -> None:
    received: list[dict[str, Any]] = []

    async def connector(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.json_response({"id": f"reply-{len(received)}"})

    connector_app = web.Application()
    connector_app.router.add_post("/{tail:.*}", connector)

    storage = FileStorage(tmp_path / "state")
    adapter = CloudAdapter(ConfigurationBotFrameworkAuthentication(AnonymousConfig()))
    bot = sample.wire(adapter, storage)

    async def messages(request: web.Request) -> web.StreamResponse:
        return await adapter.process(request, bot)

    bot_app = web.Application()
    bot_app.router.add_post("/api/messages", messages)

    async with (
        TestServer(connector_app, host="127.0.0.1") as channel,
        TestServer(bot_app, host="127.0.0.1") as host,
        ClientSession() as http,
    ):
        service_url = str(channel.make_url("/"))
        endpoint = host.make_url("/api/messages")
        for activity_id, text in [("h-1", "hi"), ("h-2", "Ada"), ("h-2", "Ada"), ("h-3", "36")]:
            async with http.post(endpoint, json=activity(activity_id, text, service_url)) as response:
                assert response.status in (200, 201), await response.text()
    # the redelivered h-2 got no second reply
    assert [r["text"] for r in received] == [
        "What is your name?",
        "How old are you, Ada?",
        "Thanks Ada, you are 36.",
    ]
    assert received[1]["replyToId"] == "h-2" and received[1]["conversation"]["id"] == "19:http"

    items = await BotBuilderStorage(storage).read(["msteams/users/u-1", "msteams/conversations/19:http"])
    assert items["msteams/users/u-1"]["profile"] == {"name": "Ada", "age": 36}
    assert items["msteams/conversations/19:http"]["DialogState"].dialog_stack == []
    await storage.aclose()
