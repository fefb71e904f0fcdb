"""Drive the agent in bot.py with scripted activities, offline: python samples/agents_sdk/drive.py"""

from __future__ import annotations

import argparse
import asyncio
import logging
import tempfile

from bot import make_agent
from microsoft_agents.activity import Activity
from microsoft_agents.hosting.core.authorization import ClaimsIdentity

SCRIPT = [("m1", "29:ann", "Ann", "hello"), ("m2", "29:ann", "Ann", "again"),
          ("m2", "29:ann", "Ann", "again (redelivered)"), ("m3", "29:bob", "Bob", "hi")]  # fmt: skip


async def main(state_dir: str) -> None:
    logging.getLogger("microsoft_agents").setLevel(logging.ERROR)  # its notice that no app id is set
    adapter, app = make_agent(state_dir)
    for activity_id, user, name, text in SCRIPT:
        activity = Activity.model_validate({
            "type": "message", "id": activity_id, "text": text, "channelId": "msteams",
            "serviceUrl": "http://127.0.0.1:9/", "deliveryMode": "expectReplies",
            "conversation": {"id": "19:demo", "tenantId": "t-1"},
            "from": {"id": user, "name": name}, "recipient": {"id": "28:agent"},
        })  # fmt: skip
        response = await adapter.process_activity(ClaimsIdentity(), activity, app.on_turn)
        replies = [a["text"] for a in response.body["activities"]] if response and response.body else []
        print(f"{name}: {text} -> {' | '.join(replies) or '(already handled: no reply)'}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--state-dir", default=None)
    args = parser.parse_args()
    asyncio.run(main(args.state_dir or tempfile.mkdtemp(prefix="agent-state-")))
