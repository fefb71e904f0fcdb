"""A bot that kept its state in botbuilder's own storages moves to turnstate mid-dialog: its items are
copied (MemoryStorage dumps, CosmosDbPartitionedStorage items) or served as they are, under the same keys."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import jsonpickle
import pytest
from botbuilder.azure import CosmosDbKeyEscape
from botbuilder.core import ConversationState, UserState
from botbuilder.core import MemoryStorage as BotMemoryStorage
from botbuilder.core.adapters import TestAdapter
from botbuilder.schema import Activity, ChannelAccount, ConversationAccount
from jsonpickle.pickler import Pickler

from tests.support.backends import Backend
from turnstate import CorruptDocumentError, MemoryStorage, Storage, WriteItem
from turnstate.integrations.botbuilder import BotBuilderStorage, import_botbuilder_items

_SPEC = importlib.util.spec_from_file_location(
    "botbuilder_dialogs_sample_migration",
    Path(__file__).parent.parent / "samples" / "botbuilder_dialogs" / "bot.py",
)
assert _SPEC is not None and _SPEC.loader is not None
sample: Any = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(sample)

CONVERSATION = "msteams/conversations/19:old"
USER = "msteams/users/u-1"


def message(activity_id: str, text: str) -> Activity:
    return Activity(
        type="message",
        id=activity_id,
        text=text,
        channel_id="msteams",
        service_url="https://test.example",
        conversation=ConversationAccount(id="19:old"),
        from_property=ChannelAccount(id="u-1", name="Ada"),
        recipient=ChannelAccount(id="28:bot"),
    )


async def say(adapter: TestAdapter, activity_id: str, text: str) -> list[str]:
    await adapter.receive_activity(message(activity_id, text))
    replies = [str(a.text) for a in adapter.activity_buffer]
    adapter.activity_buffer.clear()
    return replies


async def old_bot_mid_dialog() -> BotMemoryStorage:
    """The sample bot on botbuilder's MemoryStorage, waiting for the age."""
    old = BotMemoryStorage()
    bot = sample.ProfileBot(ConversationState(old), UserState(old))
    adapter = TestAdapter(bot.on_turn)
    assert await say(adapter, "o-1", "hi") == ["What is your name?"]
    assert await say(adapter, "o-2", "Ada") == ["How old are you, Ada?"]
    assert set(old.memory) == {CONVERSATION}
    return old


async def finish_on_turnstate(storage: Storage) -> None:
    adapter = TestAdapter()
    adapter.logic = sample.wire(adapter, storage).on_turn
    assert await say(adapter, "n-1", "36") == ["Thanks Ada, you are 36."]
    assert (await BotBuilderStorage(storage).read([USER]))[USER]["profile"] == {"name": "Ada", "age": 36}


async def test_a_memory_storage_dump_continues_its_dialog_on_turnstate(
    backend: Backend, tmp_path: Path
) -> None:
    old = await old_bot_mid_dialog()
    dump = tmp_path / "memory.json"
    dump.write_text(jsonpickle.encode(old.memory))
    storage = backend.open()
    report = await import_botbuilder_items(BotBuilderStorage(storage), json.loads(dump.read_text()))
    assert report.imported == [CONVERSATION] and report.skipped == []
    await finish_on_turnstate(storage)


async def test_live_memory_storage_items_import_and_a_rerun_skips_them() -> None:
    old = await old_bot_mid_dialog()
    storage = MemoryStorage()
    bridge = BotBuilderStorage(storage)
    assert (await import_botbuilder_items(bridge, old.memory)).imported == [CONVERSATION]
    again = await import_botbuilder_items(bridge, old.memory)
    assert again.imported == [] and again.skipped == [CONVERSATION]
    assert (await import_botbuilder_items(bridge, old.memory, overwrite=True)).imported == [CONVERSATION]
    await finish_on_turnstate(storage)


def cosmos_items(memory: dict[str, Any]) -> list[dict[str, Any]]:
    """Items laid out as CosmosDbPartitionedStorage stores them."""
    items = []
    for key, item in memory.items():
        document = Pickler().flatten(item)
        document.pop("e_tag", None)
        items.append(
            {"id": CosmosDbKeyEscape.sanitize_key(key), "realId": key, "document": document, "_etag": '"7"'}
        )
    return items


async def test_cosmos_partitioned_items_import(backend: Backend) -> None:
    old = await old_bot_mid_dialog()
    storage = backend.open()
    report = await import_botbuilder_items(BotBuilderStorage(storage), cosmos_items(old.memory))
    assert report.imported == [CONVERSATION]
    await finish_on_turnstate(storage)


async def test_old_layouts_are_served_as_they_are_under_their_keys() -> None:
    old = await old_bot_mid_dialog()
    storage = MemoryStorage()
    (cosmos,) = cosmos_items(old.memory)
    await storage.write({CONVERSATION: WriteItem(json.dumps(cosmos).encode())})
    await finish_on_turnstate(storage)

    bare = json.loads(jsonpickle.encode(old.memory))[CONVERSATION]
    storage = MemoryStorage()
    await storage.write({CONVERSATION: WriteItem(json.dumps(bare).encode())})
    await finish_on_turnstate(storage)


async def test_an_item_that_is_not_a_cosmos_item_is_refused_by_position() -> None:
    with pytest.raises(CorruptDocumentError, match=r"'#1'.*realId"):
        await import_botbuilder_items(
            BotBuilderStorage(MemoryStorage()), [{"realId": "a", "document": {}}, {"id": "b"}]
        )
