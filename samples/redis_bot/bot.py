"""The counter bot on Redis: several instances of one bot share the conversation and user state.

Run one instance per terminal against the same Redis, as a scaled-out bot runs one per host:

    python samples/redis_bot/bot.py --redis redis://127.0.0.1:6390 --instance A hello hi
    python samples/redis_bot/bot.py --redis redis://127.0.0.1:6390 --instance B        # interactive
    printf 'a\\nb\\n' | python samples/redis_bot/bot.py --redis redis://127.0.0.1:6390 --instance B

Or run several instances at once on one conversation, each a Bot with its own RedisStorage (its own
connections), and check that the stored count equals the number of turns:

    python samples/redis_bot/bot.py --redis redis://127.0.0.1:6390 --instances 2 --turns 50

Replies start with ``[instance request-id]``; the count and the previous answering instance come from
Redis. ``reset`` clears the conversation; ``--show-state`` prints the stored documents at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import string
import sys
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass

from turnstate_redis import RedisStorage

from turnstate import Activity, StateManager
from turnstate.errors import CommitRetriesExhaustedError, StorageUnavailableError
from turnstate.runtime import Bot, TurnContext

DEFAULT_REDIS = "redis://127.0.0.1:6379"
DEFAULT_PREFIX = "counterbot:"
CONVERSATION_TTL = 7 * 24 * 3600
START_HINT = (
    "start one with `redis-server --port 6390 --save '' --appendonly no` "
    "and pass --redis redis://127.0.0.1:6390"
)


def build_bot(
    storage: RedisStorage, instance: str, *, rerun_on_conflict: bool = False, work: float = 0.0
) -> Bot:
    """The counter bot, answering as ``instance``; its state lives in ``storage``.

    ``work``: each turn waits up to that many seconds (at random) before replying, as a bot calling
    other services would, which leaves more room for another instance to commit in between.
    """
    bot = Bot()
    bot.use_state(storage, ttl={"conversation": CONVERSATION_TTL}, rerun_on_conflict=rerun_on_conflict)

    @bot.use()
    async def stamp_request(ctx: TurnContext, next: Callable[[], Awaitable[None]]) -> None:
        if ctx.state:
            # Temp scope: lives for this turn only, never stored.
            ctx.state.temp.set("instance", instance)
            ctx.state.temp.set("requestId", uuid.uuid4().hex[:8])
        await next()

    @bot.on("message")
    async def on_message(ctx: TurnContext) -> None:
        state = ctx.state
        if state is None:
            raise RuntimeError("the counter bot needs state: build it with build_bot()")
        tag = f"[{state.temp.get('instance', str)} {state.temp.get('requestId', str)}]"
        text = (ctx.activity.text or "").strip()
        if text == "reset":
            state.conversation.clear()
            await ctx.send(f"{tag} Conversation state cleared.")
            return
        count = state.conversation.incr("turnCount")
        previous = state.conversation.get("lastInstance", str)
        state.conversation.set("lastInstance", instance)
        state.conversation.set("lastMessage", text)
        name = state.user.get("displayName", str)
        if not name:
            name = (ctx.activity.from_.name if ctx.activity.from_ else None) or "User"
            state.user.set("displayName", name)
        messages = state.user.incr("messagesSent")
        if work:
            await asyncio.sleep(random.uniform(0, work))
        where = f" (previous turn answered by {previous})" if previous else ""
        await ctx.send(f"{tag} Turn #{count} in this conversation{where}. {name}, you have sent {messages}.")

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


def prompt_lines(instance: str) -> Iterator[str]:
    while True:
        try:
            yield input(f"you@{instance}> ")
        except EOFError:
            print()
            return


async def chat(
    messages: Iterable[str],
    url: str,
    prefix: str,
    instance: str,
    user: str,
    conversation: str,
    *,
    rerun: bool,
    work: float,
    show: bool,
) -> None:
    """One instance: a turn per message, replies printed as they come."""
    async with RedisStorage(url, key_prefix=prefix) as storage:
        bot = build_bot(storage, instance, rerun_on_conflict=rerun, work=work)
        for text in messages:
            if not text.strip():
                continue
            for reply in await bot.process(activity(text, user, conversation)):
                print(f"bot> {reply['text']}", flush=True)
        if show:
            await show_state(storage)


async def show_state(storage: RedisStorage) -> None:
    keys = sorted([key async for key in storage.list_keys()])
    found = await storage.read(keys)
    print(f"\nstate kept in Redis under {storage.key_prefix!r}:")
    for key in keys:
        if key in found:
            print(f"  {storage.key_prefix}{key}")
            print("    " + json.dumps(json.loads(found[key].value), ensure_ascii=False))


@dataclass
class Instance:
    name: str
    bot: Bot
    manager: StateManager


async def stored_counts(probe: StateManager, user: str, conversation: str) -> tuple[int, int]:
    """The conversation's turnCount and the user's messagesSent as stored now (read only, no write)."""
    async with probe.turn(activity("", user, conversation)) as state:
        return state.conversation.get("turnCount", int, 0), state.user.get("messagesSent", int, 0)


async def talk(instance: Instance, turns: int, user: str, conversation: str, verbose: bool) -> None:
    for i in range(1, turns + 1):
        replies = await instance.bot.process(activity(f"message {i} to {instance.name}", user, conversation))
        if verbose:
            for reply in replies:
                print(f"bot> {reply['text']}", flush=True)


async def demo(
    url: str,
    prefix: str,
    count: int,
    turns: int,
    user: str,
    conversation: str,
    *,
    rerun: bool,
    work: float,
    verbose: bool,
) -> int:
    """``count`` instances take ``turns`` turns each, all at once, on one conversation; 0 if none was lost."""
    names = string.ascii_uppercase[:count]
    async with AsyncExitStack() as stack:
        instances: list[Instance] = []
        for name in names:
            storage = await stack.enter_async_context(RedisStorage(url, key_prefix=prefix))
            bot = build_bot(storage, name, rerun_on_conflict=rerun, work=work)
            if bot.state_manager is None:
                raise RuntimeError("build_bot() returned a bot without state")
            instances.append(Instance(name, bot, bot.state_manager))
        probe = StateManager(await stack.enter_async_context(RedisStorage(url, key_prefix=prefix)))
        print(
            f"{count} instances ({', '.join(names)}), {turns} turns each, all at once, on conversation "
            f"{conversation!r}; state in {probe.storage!r}",
            flush=True,
        )
        turns_before, sent_before = await stored_counts(probe, user, conversation)
        tasks = {i.name: asyncio.create_task(talk(i, turns, user, conversation, verbose)) for i in instances}
        await asyncio.wait(tasks.values(), return_when=asyncio.FIRST_EXCEPTION)
        for task in tasks.values():
            task.cancel()  # one instance failed: stop the others (no-op for finished ones)
        await asyncio.gather(*tasks.values(), return_exceptions=True)
        failed = {
            name: error
            for name, task in tasks.items()
            if not task.cancelled() and (error := task.exception()) is not None
        }
        for error in failed.values():
            if not isinstance(error, CommitRetriesExhaustedError):
                raise error
        turns_after, sent_after = await stored_counts(probe, user, conversation)

    for instance in instances:
        stats = instance.manager.stats
        print(
            f"instance {instance.name}: {stats['commits']} commits, {stats['conflicts']} conflicts, "
            f"{stats['merges']} merges, {stats['retries']} retries, {stats['reruns']} reruns, "
            f"{stats['gave_up']} gave up"
        )
    total = count * turns
    expected_turns, expected_sent = turns_before + total, sent_before + total
    print(f"final count: {turns_after} (expected {expected_turns}: {turns_before} before + {total} turns)")
    print(f"messages sent by {user}: {sent_after} (expected {expected_sent})")
    if failed:
        for name, error in failed.items():
            print(f"instance {name} stopped: {error}", file=sys.stderr)
        print("the other instances were stopped too, so the count is short", file=sys.stderr)
        return 1
    if (turns_after, sent_after) != (expected_turns, expected_sent):
        print(
            f"LOST UPDATES: {expected_turns - turns_after} conversation and {expected_sent - sent_after} "
            "user increments are missing",
            file=sys.stderr,
        )
        return 1
    conflicts = sum(i.manager.stats["conflicts"] for i in instances)
    resolved = "merged onto it or re-run on it" if rerun else "merged onto it"
    print(
        f"nothing lost: {conflicts} commits found a newer version in Redis (ETag mismatch) and were "
        f"{resolved}, never overwritten"
    )
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description="The counter bot, as instances sharing state in Redis.")
    parser.add_argument("messages", nargs="*", help="messages to send, one turn each (default: stdin)")
    parser.add_argument(
        "--redis", default=os.environ.get("REDIS_URL", DEFAULT_REDIS), help="Redis URL (env REDIS_URL)"
    )
    parser.add_argument("--key-prefix", default=DEFAULT_PREFIX, help="put in front of every Redis key")
    parser.add_argument("--instance", default=f"pid{os.getpid()}", help="the name replies show")
    parser.add_argument("--user", default="ann")
    parser.add_argument("--conversation", help="default: 'terminal-chat'; with --instances, a new one")
    parser.add_argument("--show-state", action="store_true", help="print the stored documents at the end")
    parser.add_argument(
        "--rerun-on-conflict",
        action="store_true",
        help="on a commit conflict, run the turn again on fresh state instead of merging",
    )
    parser.add_argument(
        "--work-ms",
        type=float,
        default=0.0,
        help="each turn waits up to this long (at random) before replying, like a bot calling an API",
    )
    parser.add_argument(
        "--instances", type=int, help="run this many instances at once (2 to 26) and check the count"
    )
    parser.add_argument("--turns", type=int, default=50, help="turns per instance with --instances")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every reply with --instances")
    args = parser.parse_args()

    if not 0 <= args.work_ms <= 60_000:
        parser.error(f"--work-ms takes 0 to 60000, got {args.work_ms}")
    try:
        if args.instances is not None:
            if not 2 <= args.instances <= 26:
                parser.error(f"--instances takes 2 to 26, got {args.instances}")
            if args.turns < 1:
                parser.error(f"--turns must be at least 1, got {args.turns}")
            if args.messages:
                parser.error("--instances sends its own messages; leave the messages out")
            conversation = args.conversation or f"demo-{uuid.uuid4().hex[:8]}"
            code = asyncio.run(
                demo(
                    args.redis,
                    args.key_prefix,
                    args.instances,
                    args.turns,
                    args.user,
                    conversation,
                    rerun=args.rerun_on_conflict,
                    work=args.work_ms / 1000,
                    verbose=args.verbose,
                )
            )
            sys.exit(code)
        if args.messages:
            messages: Iterable[str] = args.messages
        elif sys.stdin.isatty():
            print(f"Counter bot, instance {args.instance}. 'reset' clears the conversation; Ctrl-D quits.")
            messages = prompt_lines(args.instance)
        else:
            messages = (line.rstrip("\n") for line in sys.stdin)
        asyncio.run(
            chat(
                messages,
                args.redis,
                args.key_prefix,
                args.instance,
                args.user,
                args.conversation or "terminal-chat",
                rerun=args.rerun_on_conflict,
                work=args.work_ms / 1000,
                show=args.show_state,
            )
        )
    except StorageUnavailableError as exc:
        sys.exit(f"error: Redis is unavailable: {exc}\nIs it running? {START_HINT}.")
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
