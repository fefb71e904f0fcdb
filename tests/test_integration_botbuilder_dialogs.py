"""A botbuilder-dialogs bot (the botbuilder_dialogs sample) on ConversationState/UserState kept by
BotBuilderStorage over each turnstate backend, with TurnStateMiddleware dropping redelivered activities."""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path
from typing import Any

from botbuilder.core import ConversationState, TurnContext, UserState
from botbuilder.core.adapters import TestAdapter
from botbuilder.schema import Activity, ChannelAccount, ConversationAccount

from tests.support.backends import Backend
from turnstate import StateManager, Storage
from turnstate.integrations.botbuilder import BotBuilderStorage, TurnStateMiddleware

_SPEC = importlib.util.spec_from_file_location(
    "botbuilder_dialogs_sample", Path(__file__).parent.parent / "samples" / "botbuilder_dialogs" / "bot.py"
)
assert _SPEC is not None and _SPEC.loader is not None
sample: Any = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(sample)


class Instance:
    """One bot process: its own adapter and bot object over a storage, wired as the sample's ``wire``
    does, with the bridge replaceable and the duplicates it dropped recorded."""

    def __init__(self, storage: Storage, bridge: BotBuilderStorage | None = None) -> None:
        self.duplicates: list[str] = []

        async def on_duplicate(turn_context: TurnContext) -> None:
            self.duplicates.append(str(turn_context.activity.id))

        bridge = bridge or BotBuilderStorage(storage)
        self.adapter = TestAdapter()
        self.adapter.use(TurnStateMiddleware(StateManager(storage), on_duplicate=on_duplicate))
        self.bot = sample.ProfileBot(ConversationState(bridge), UserState(bridge))
        self.adapter.logic = self.bot.on_turn

    async def deliver(self, activity_id: str, text: str) -> list[str]:
        await self.adapter.receive_activity(message(activity_id, text))
        replies = [str(a.text) for a in self.adapter.activity_buffer]
        self.adapter.activity_buffer.clear()
        return replies


def message(activity_id: str, text: str) -> Activity:
    return Activity(
        type="message",
        id=activity_id,
        text=text,
        channel_id="msteams",
        service_url="https://test.example",
        conversation=ConversationAccount(id="19:dialog"),
        from_property=ChannelAccount(id="u-1", name="Ada"),
        recipient=ChannelAccount(id="28:bot"),
    )


async def profile(storage: Storage) -> Any:
    items = await BotBuilderStorage(storage).read(["msteams/users/u-1"])
    return items.get("msteams/users/u-1", {}).get("profile")


async def test_a_waterfall_with_prompts_completes_across_turns_and_instances(backend: Backend) -> None:
    first, second = Instance(backend.open()), Instance(backend.open())
    assert await first.deliver("m-1", "hi") == ["What is your name?"]
    assert await second.deliver("m-2", "Ada") == ["How old are you, Ada?"]
    assert await first.deliver("m-3", "two hundred") == ["Please give an age between 1 and 120."]
    assert await second.deliver("m-4", "200") == ["Please give an age between 1 and 120."]
    assert await first.deliver("m-5", "36") == ["Thanks Ada, you are 36."]
    assert await profile(backend.open()) == {"name": "Ada", "age": 36}
    assert await second.deliver("m-6", "again") == ["What is your name?"]


async def test_a_redelivered_activity_advances_the_dialog_once(backend: Backend) -> None:
    bot = Instance(backend.open())
    await bot.deliver("m-1", "hi")
    assert await bot.deliver("m-2", "Ada") == ["How old are you, Ada?"]
    assert await bot.deliver("m-2", "Ada") == []
    other = Instance(backend.open())
    assert await other.deliver("m-2", "Ada") == []
    assert bot.duplicates == other.duplicates == ["m-2"]
    assert await bot.deliver("m-3", "36") == ["Thanks Ada, you are 36."]


async def test_a_retry_after_the_state_was_saved_but_the_turn_failed_is_dropped(backend: Backend) -> None:
    """The bot saved its dialog state, then failed (so turnstate committed nothing): the retry of that
    activity finds the saved state marked with it and does not run the dialog step again."""
    storage = backend.open()
    bot = Instance(storage)
    await bot.deliver("m-1", "hi")
    save = bot.bot.on_turn

    async def save_then_fail(turn_context: TurnContext) -> None:
        await save(turn_context)
        raise RuntimeError("the reply could not be sent")

    bot.adapter.logic = save_then_fail
    try:
        await bot.deliver("m-2", "Ada")
    except RuntimeError:
        pass
    else:
        raise AssertionError("the failing turn did not fail")
    bot.adapter.logic = save
    bot.adapter.activity_buffer.clear()
    assert await bot.deliver("m-2", "Ada") == []
    assert bot.duplicates == ["m-2"]
    assert await bot.deliver("m-3", "36") == ["Thanks Ada, you are 36."]


class Barrier(BotBuilderStorage):
    """Holds every write until both instances have reached their first one, so both deliveries of an
    activity load the same state before either saves."""

    def __init__(self, storage: Storage, barrier: asyncio.Barrier) -> None:
        super().__init__(storage)
        self.barrier = barrier
        self.waited = False

    async def write(self, changes: Any) -> None:
        if not self.waited:
            self.waited = True
            await self.barrier.wait()
        await super().write(changes)


async def test_concurrent_deliveries_on_two_instances_advance_the_dialog_once(backend: Backend) -> None:
    setup = Instance(backend.open())
    await setup.deliver("m-1", "hi")
    barrier = asyncio.Barrier(2)
    instances = [Instance(s, Barrier(s, barrier)) for s in (backend.open(), backend.open())]
    replies = await asyncio.gather(*(i.deliver("m-2", "Ada") for i in instances))
    # both ran the step (botbuilder sends as the handler runs); one saved it, the other was dropped
    assert replies == [["How old are you, Ada?"]] * 2
    assert sorted(len(i.duplicates) for i in instances) == [0, 1]
    assert await setup.deliver("m-3", "36") == ["Thanks Ada, you are 36."]
    assert await profile(backend.open()) == {"name": "Ada", "age": 36}


async def test_concurrent_first_deliveries_create_the_state_once(backend: Backend) -> None:
    barrier = asyncio.Barrier(2)
    instances = [Instance(s, Barrier(s, barrier)) for s in (backend.open(), backend.open())]
    await asyncio.gather(*(i.deliver("m-1", "hi") for i in instances))
    assert sorted(len(i.duplicates) for i in instances) == [0, 1]
    assert await instances[0].deliver("m-2", "Ada") == ["How old are you, Ada?"]
