"""BotBuilderStorage: botbuilder's Storage contract (botbuilder-testing's StorageBaseTests) over every
turnstate backend, plus e_tags, TTL and encryption as botbuilder code sees them."""

from __future__ import annotations

import json

import pytest
from botbuilder.core import ConversationState, StoreItem, TurnContext
from botbuilder.core.adapters import TestAdapter
from botbuilder.dialogs import DialogSet, DialogTurnStatus, TextPrompt, WaterfallDialog, WaterfallStepContext
from botbuilder.testing import StorageBaseTests

from tests.support.backends import Backend
from turnstate import (
    FieldEncryption,
    InvalidItemError,
    KeyRing,
    MemoryStorage,
    PlaintextFieldError,
    PreconditionFailedError,
)
from turnstate.integrations.botbuilder import (
    BotBuilderConfigError,
    BotBuilderStorage,
    ETagConflictError,
    MissingArgumentError,
)

BASE_TESTS = [
    "return_empty_object_when_reading_unknown_key",
    "handle_null_keys_when_reading",
    "handle_null_keys_when_writing",
    "does_not_raise_when_writing_no_items",
    "create_object",
    "handle_crazy_keys",
    "update_object",
    "delete_object",
    "delete_unknown_object",
    "perform_batch_operations",
    "proceeds_through_waterfall",
]


@pytest.mark.parametrize("name", BASE_TESTS)
async def test_botbuilder_storage_base_tests_pass(backend: Backend, name: str) -> None:
    assert await getattr(StorageBaseTests, name)(BotBuilderStorage(backend.open()))


async def test_a_stale_e_tag_is_refused_across_instances(backend: Backend) -> None:
    first, second = BotBuilderStorage(backend.open()), BotBuilderStorage(backend.open())
    await first.write({"msteams/conversations/c1": {"count": 1}})
    mine = (await first.read(["msteams/conversations/c1"]))["msteams/conversations/c1"]
    theirs = (await second.read(["msteams/conversations/c1"]))["msteams/conversations/c1"]
    theirs["count"] = 2
    await second.write({"msteams/conversations/c1": theirs})
    mine["count"] = 3
    with pytest.raises(ETagConflictError, match="msteams/conversations/c1") as caught:
        await first.write({"msteams/conversations/c1": mine})
    assert isinstance(caught.value, KeyError) and isinstance(caught.value, PreconditionFailedError)
    assert (await first.read(["msteams/conversations/c1"]))["msteams/conversations/c1"]["count"] == 2
    mine["e_tag"] = "*"
    await first.write({"msteams/conversations/c1": mine})
    assert (await second.read(["msteams/conversations/c1"]))["msteams/conversations/c1"]["count"] == 3


class Profile(StoreItem):  # type: ignore[misc]
    def __init__(self, name: str = "", visits: int = 0, e_tag: str = "*") -> None:
        super().__init__(name=name, visits=visits, e_tag=e_tag)


async def test_store_items_and_dicts_round_trip_and_take_the_new_e_tag() -> None:
    bridge = BotBuilderStorage(MemoryStorage())
    profile = Profile("Ada", 1)
    plain: dict[str, object] = {"n": 1}
    await bridge.write({"p": profile, "d": plain})
    assert profile.e_tag not in (None, "*") and isinstance(plain["e_tag"], str)
    read = await bridge.read(["p", "d"])
    assert isinstance(read["p"], Profile) and read["p"].name == "Ada" and read["p"].e_tag == profile.e_tag
    assert read["d"] == {"n": 1, "e_tag": plain["e_tag"]}
    profile.visits = 2
    await bridge.write({"p": profile})  # the written-back e_tag is current
    assert (await bridge.read(["p"]))["p"].visits == 2


async def test_bad_arguments_are_typed_errors_naming_the_key() -> None:
    bridge = BotBuilderStorage(MemoryStorage())
    with pytest.raises(MissingArgumentError, match="Keys are required when reading: pass"):
        await bridge.read(None)  # type: ignore[arg-type]
    with pytest.raises(InvalidItemError, match=r"'k'.*empty string"):
        await bridge.write({"k": {"e_tag": ""}})
    with pytest.raises(InvalidItemError, match=r"'k'.*no JSON form"):
        await bridge.write({"k": {"x": float("nan")}})
    assert await bridge.read(["k"]) == {}
    with pytest.raises(BotBuilderConfigError, match="'msteams/'"):
        BotBuilderStorage(MemoryStorage(), ttl={"msteams/": 0})
    with pytest.raises(BotBuilderConfigError, match="single string 'k'"):
        await bridge.read("k")
    with pytest.raises(BotBuilderConfigError, match="got list"):
        await bridge.write([("k", {})])  # type: ignore[arg-type]
    with pytest.raises(BotBuilderConfigError, match="turnstate storage"):
        BotBuilderStorage({})  # type: ignore[arg-type]


async def test_ttl_is_set_per_key_prefix_longest_first() -> None:
    storage = MemoryStorage()
    bridge = BotBuilderStorage(storage, ttl={"msteams/": 3600, "msteams/conversations/": 60})
    assert bridge.ttl_for("msteams/conversations/c") == 60
    assert bridge.ttl_for("msteams/users/u") == 3600
    assert bridge.ttl_for("slack/users/u") is None
    await bridge.write({"msteams/conversations/c": {"a": 1}, "slack/users/u": {"a": 1}})
    stored = await storage.read(["msteams/conversations/c", "slack/users/u"])
    conversation_expiry = stored["msteams/conversations/c"].expires_at
    assert conversation_expiry is not None
    assert stored["slack/users/u"].expires_at is None


def encryption(*paths: str) -> FieldEncryption:
    return FieldEncryption(paths, KeyRing({"k1": KeyRing.generate_key()}))


async def dialog_turns(bridge: BotBuilderStorage, texts: list[str]) -> list[str]:
    conversation_state = ConversationState(bridge)
    dialogs = DialogSet(conversation_state.create_property("DialogState"))

    async def ask(step: WaterfallStepContext) -> DialogTurnStatus:
        return await step.prompt("text", _options("Your secret?"))

    async def done(step: WaterfallStepContext) -> DialogTurnStatus:
        await step.context.send_activity(f"kept {step.result}")
        return await step.end_dialog()

    dialogs.add(TextPrompt("text"))
    dialogs.add(WaterfallDialog("ask", [ask, done]))
    replies: list[str] = []

    async def bot(turn_context: TurnContext) -> None:
        dc = await dialogs.create_context(turn_context)
        result = await dc.continue_dialog()
        if result.status == DialogTurnStatus.Empty:
            await dc.begin_dialog("ask")
        await conversation_state.save_changes(turn_context)

    adapter = TestAdapter(bot)
    for text in texts:
        await adapter.receive_activity(text)
        replies.extend(str(a.text) for a in adapter.activity_buffer)
        adapter.activity_buffer.clear()
    return replies


def _options(text: str) -> object:
    from botbuilder.core import MessageFactory
    from botbuilder.dialogs.prompts import PromptOptions

    return PromptOptions(prompt=MessageFactory.text(text))


async def test_an_encrypted_dialog_state_is_ciphertext_at_rest_and_works() -> None:
    storage = MemoryStorage()
    bridge = BotBuilderStorage(storage, encryption=encryption("ConversationState.DialogState"))
    assert await dialog_turns(bridge, ["hi"]) == ["Your secret?"]
    keys = [k async for k in storage.list_keys()]
    assert len(keys) == 1 and keys[0].endswith("/conversations/Convo1")
    raw = (await storage.read(keys))[keys[0]].value
    assert b"dialog_stack" not in raw and b"$enc" in raw
    replies = await dialog_turns(bridge, ["s3cr3t-value"])
    assert replies == ["kept s3cr3t-value"]
    assert b"s3cr3t-value" not in (await storage.read(keys))[keys[0]].value


async def test_plaintext_where_encryption_is_declared_is_refused_naming_the_key() -> None:
    storage = MemoryStorage()
    await BotBuilderStorage(storage).write({"msteams/users/u1": {"profile": {"email": "a@example.org"}}})
    bridge = BotBuilderStorage(storage, encryption=encryption("UserState.profile.email"))
    with pytest.raises(PlaintextFieldError, match="msteams/users/u1") as caught:
        await bridge.read(["msteams/users/u1"])
    assert "a@example.org" not in str(caught.value)
    with pytest.raises(BotBuilderConfigError, match="'Profile'"):
        BotBuilderStorage(storage, encryption=encryption("Profile.email"))


async def test_the_stored_layout_is_documented_json() -> None:
    storage = MemoryStorage()
    await BotBuilderStorage(storage).write({"k": {"a": 1, "e_tag": "*"}})
    body = json.loads((await storage.read(["k"]))["k"].value)
    assert body == {"$botbuilder": 1, "document": {"a": 1}, "activity": None}
