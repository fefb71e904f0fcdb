"""The state counter bot: conversation, user and temp scopes on FileStorage.

Talk to it in a terminal, or pass messages as arguments or on stdin:

    python samples/counter_bot.py                       # interactive; Ctrl-D to quit
    python samples/counter_bot.py hello "how are you"   # one turn per argument
    printf 'a\\nb\\n' | python samples/counter_bot.py     # one turn per line

State lives in JSON files under ./state-data (``--state-dir`` to change it), so the count goes on after a
restart. ``--show-state`` prints the stored documents after the turns. ``reset`` clears the conversation.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

from turnstate import Activity
from turnstate.runtime import Bot, TurnContext
from turnstate.storage.file import FileStorage


def build_bot(storage: FileStorage) -> Bot:
    bot = Bot()
    bot.use_state(storage, ttl={"conversation": 7 * 24 * 3600})

    @bot.use()
    async def stamp_request(ctx: TurnContext, next: object) -> None:
        if ctx.state:
            ctx.state.temp.set("requestId", uuid.uuid4().hex[:8])
        await next()  # type: ignore[operator]

    @bot.on("message")
    async def on_message(ctx: TurnContext) -> None:
        assert ctx.state is not None
        text = (ctx.activity.text or "").strip()
        if text == "reset":
            ctx.state.conversation.clear()
            await ctx.send("Conversation state cleared.")
            return
        count = ctx.state.conversation.incr("turnCount")
        ctx.state.conversation.set("lastMessage", text)
        name = ctx.state.user.get("displayName", str)
        if not name:
            name = (ctx.activity.from_.name if ctx.activity.from_ else None) or "User"
            ctx.state.user.set("displayName", name)
        messages = ctx.state.user.incr("messagesSent")
        request_id = ctx.state.temp.get("requestId", str)
        await ctx.send(
            f"[{request_id}] Turn #{count} in this conversation. {name}, you have sent {messages}."
        )

    return bot


def activity(text: str, user: str, conversation: str) -> Activity:
    return Activity.from_dict(
        {
            "type": "message",
            "id": uuid.uuid4().hex,
            "channelId": "terminal",
            "conversation": {"id": conversation},
            "from": {"id": user, "name": user.title()},
            "recipient": {"id": "counter-bot"},
            "text": text,
        }
    )


def prompt_lines() -> Iterator[str]:
    while True:
        try:
            yield input("you> ")
        except EOFError:
            print()
            return


async def run(messages: Iterable[str], state_dir: Path, user: str, conversation: str, show: bool) -> None:
    async with FileStorage(state_dir) as storage:
        bot = build_bot(storage)
        for text in messages:
            if not text.strip():
                continue
            for reply in await bot.process(activity(text, user, conversation)):
                print(f"bot> {reply['text']}", flush=True)
        if show:
            print(f"\nstate kept in {state_dir}/:")
            for path in sorted(p for p in state_dir.iterdir() if p.is_file()):
                print(f"  {path.name}")
                print("    " + json.dumps(json.loads(path.read_text()), ensure_ascii=False))


def main() -> None:
    parser = argparse.ArgumentParser(description="A counter bot whose state survives restarts.")
    parser.add_argument("messages", nargs="*", help="messages to send, one turn each (default: stdin)")
    parser.add_argument("--state-dir", type=Path, default=Path("state-data"))
    parser.add_argument("--user", default="ann")
    parser.add_argument("--conversation", default="terminal-chat")
    parser.add_argument("--show-state", action="store_true", help="print the stored documents at the end")
    args = parser.parse_args()
    if args.messages:
        messages: Iterable[str] = args.messages
    elif sys.stdin.isatty():
        print("Counter bot. Type messages; 'reset' clears the conversation; Ctrl-D quits.")
        messages = prompt_lines()
    else:
        messages = (line.rstrip("\n") for line in sys.stdin)
    asyncio.run(run(messages, args.state_dir, args.user, args.conversation, args.show_state))


if __name__ == "__main__":
    main()
