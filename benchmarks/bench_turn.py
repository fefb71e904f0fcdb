"""Per-turn CPU cost of the state layer on MemoryStorage, against botbuilder-core in the same run.

Shape: a conversation document and a user document of 10 keys each; a read-write turn changes 2 keys in
each, a read-only turn reads 2 keys of each. turnstate runs with redelivery detection on (the default).
The peer is botbuilder-core's ConversationState + UserState with property accessors on its MemoryStorage,
the state layer of the Bot Framework SDK. Prints microseconds of CPU per turn and the ratio.

    python benchmarks/bench_turn.py [--turns N]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import time
from collections.abc import Awaitable, Callable

from turnstate import Activity, MemoryStorage, StateManager

ACTIVITY = {
    "type": "message",
    "id": "a",
    "channelId": "msteams",
    "serviceUrl": "https://smba.example/",
    "conversation": {"id": "19:conversation@thread.v2", "tenantId": "tenant"},
    "from": {"id": "29:user", "name": "Ann"},
    "recipient": {"id": "28:bot", "name": "Bot"},
    "text": "hi",
}
KEYS = [f"key{i}" for i in range(10)]


async def measure(turn: Callable[[int], Awaitable[None]], turns: int) -> float:
    """CPU microseconds per turn, best of three runs."""
    for i in range(min(turns // 10, 2000)):
        await turn(i)
    best = float("inf")
    for _ in range(3):
        gc.collect()
        start = time.process_time()
        for i in range(turns):
            await turn(i)
        best = min(best, (time.process_time() - start) / turns * 1e6)
    return best


def turnstate_turns(
    storage: MemoryStorage | None = None, **options: object
) -> tuple[Callable[[int], Awaitable[None]], Callable[[int], Awaitable[None]]]:
    storage = MemoryStorage() if storage is None else storage
    manager = StateManager(storage, builtin_scopes=("conversation", "user"), **options)  # type: ignore[arg-type]
    activity = Activity.from_dict(ACTIVITY)
    seeded = False

    async def write_turn(i: int) -> None:
        nonlocal seeded
        if not seeded:
            async with manager.turn(activity) as state:
                for k in KEYS:
                    state.conversation.set(k, f"conversation value {k}")
                    state.user.set(k, f"user value {k}")
            seeded = True
        activity.id = f"w{i}"
        async with manager.turn(activity) as state:
            state.conversation.set("key1", i)
            state.conversation.set("key2", f"text {i}")
            state.user.set("key3", i)
            state.user.set("key4", f"text {i}")

    async def read_turn(i: int) -> None:
        activity.id = f"r{i}"
        async with manager.turn(activity) as state:
            state.conversation.get("key1")
            state.conversation.get("key2")
            state.user.get("key3")
            state.user.get("key4")

    return write_turn, read_turn


def botbuilder_turns() -> tuple[Callable[[int], Awaitable[None]], Callable[[int], Awaitable[None]]]:
    from botbuilder.core import BotAdapter, ConversationState, TurnContext, UserState
    from botbuilder.core import MemoryStorage as BotbuilderMemoryStorage
    from botbuilder.schema import Activity as BotbuilderActivity

    class Adapter(BotAdapter):  # type: ignore[misc]
        async def send_activities(self, context, activities):  # type: ignore[no-untyped-def]
            return []

        async def update_activity(self, context, activity):  # type: ignore[no-untyped-def]
            return None

        async def delete_activity(self, context, reference):  # type: ignore[no-untyped-def]
            return None

    storage = BotbuilderMemoryStorage()
    conversation, user = ConversationState(storage), UserState(storage)
    conv_props = {k: conversation.create_property(k) for k in KEYS}
    user_props = {k: user.create_property(k) for k in KEYS}
    adapter = Adapter()
    activity = BotbuilderActivity().deserialize(ACTIVITY)
    seeded = False

    async def write_turn(i: int) -> None:
        nonlocal seeded
        ctx = TurnContext(adapter, activity)
        await conversation.load(ctx)
        await user.load(ctx)
        if not seeded:
            for k in KEYS:
                await conv_props[k].set(ctx, f"conversation value {k}")
                await user_props[k].set(ctx, f"user value {k}")
            seeded = True
        await conv_props["key1"].set(ctx, i)
        await conv_props["key2"].set(ctx, f"text {i}")
        await user_props["key3"].set(ctx, i)
        await user_props["key4"].set(ctx, f"text {i}")
        await conversation.save_changes(ctx)
        await user.save_changes(ctx)

    async def read_turn(i: int) -> None:
        ctx = TurnContext(adapter, activity)
        await conversation.load(ctx)
        await user.load(ctx)
        await conv_props["key1"].get(ctx)
        await conv_props["key2"].get(ctx)
        await user_props["key3"].get(ctx)
        await user_props["key4"].get(ctx)
        await conversation.save_changes(ctx)
        await user.save_changes(ctx)

    return write_turn, read_turn


async def main(turns: int) -> None:
    ours_write, ours_read = turnstate_turns()
    plain_write, _ = turnstate_turns(dedupe=False)
    try:
        peer_write, peer_read = botbuilder_turns()
    except ImportError as exc:
        raise SystemExit(f"the peer is missing ({exc}); install it with: pip install -e '.[bench]'") from exc
    peer_write_us = await measure(peer_write, turns)
    rows = [
        ("read-write turn", await measure(ours_write, turns), peer_write_us),
        ("  without dedupe", await measure(plain_write, turns), peer_write_us),
        ("read-only turn", await measure(ours_read, turns), await measure(peer_read, turns)),
    ]
    print(f"CPU per turn, conversation + user documents of {len(KEYS)} keys, MemoryStorage, {turns} turns x3")
    print(f"{'':18}{'turnstate':>12}{'botbuilder-core':>18}{'ratio':>9}")
    for name, ours, peer in rows:
        print(f"{name:18}{ours:>10.1f}us{peer:>16.1f}us{peer / ours:>8.1f}x")
    print("'without dedupe': redelivery detection off (StateManager(dedupe=False)); botbuilder has none.")
    print("target: turnstate read-write turn under 10 us")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--turns", type=int, default=20000)
    asyncio.run(main(parser.parse_args().turns))
