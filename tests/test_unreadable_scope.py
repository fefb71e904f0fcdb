"""One unreadable document spoils only its own scope: the turn's other scopes work and commit, the
document is left as it is, and redelivery is still recognised from the readable documents."""

from __future__ import annotations

import pytest

from tests.support.activities import message
from tests.support.backends import Backend
from turnstate import CorruptDocumentError, DecryptionError, StateManager, WriteItem
from turnstate.keyring import KeyRing


async def key_of(backend: Backend, scope: str) -> str:
    [key] = [k async for k in backend.open().list_keys(f"{scope}/")]
    return key


async def test_a_corrupt_conversation_document_leaves_the_user_scope_working(backend: Backend) -> None:
    manager = StateManager(backend.open())
    async with manager.turn(message()) as state:
        state.conversation.set("step", 1)
        state.user.set("name", "Ann")
    storage = backend.open()
    key = await key_of(backend, "conversation")
    await storage.write({key: WriteItem(b'{"not": "a turnstate document"}')})
    async with manager.turn(message()) as state:
        assert state.user.get("name") == "Ann"
        state.user.set("visits", 2)
        with pytest.raises(CorruptDocumentError, match="conversation/"):
            state.conversation.get("step")
        with pytest.raises(CorruptDocumentError):
            state.set_value("conversation.step", 2)  # every use raises, writes included
    assert (await storage.read([key]))[key].value == b'{"not": "a turnstate document"}'
    async with manager.turn(message()) as state:
        assert state.user.to_dict() == {"name": "Ann", "visits": 2}


async def test_a_document_that_does_not_decrypt_spoils_only_its_scope(backend: Backend) -> None:
    keys = KeyRing({"k1": bytes(range(32))})
    manager = StateManager(backend.open(), encrypt=["user.email"], keys=keys)
    async with manager.turn(message()) as state:
        state.user.set("email", "ann@contoso.example")
        state.conversation.set("step", 1)
    other = StateManager(backend.open(), encrypt=["user.email"], keys=KeyRing({"k1": bytes(32)}))
    async with other.turn(message()) as state:  # the same key id, another key: the tag check fails
        with pytest.raises(DecryptionError) as raised:
            state.user.get("email")
        assert "ann@contoso" not in str(raised.value)
        state.conversation.set("step", 2)
    async with manager.turn(message()) as state:
        assert state.conversation.get("step") == 2
        assert state.user.get("email") == "ann@contoso.example"


async def test_a_redelivery_is_still_recognised_when_one_of_its_documents_is_unreadable(
    backend: Backend,
) -> None:
    manager = StateManager(backend.open())
    activity = message(activity_id="done-before-corruption")
    async with manager.turn(activity) as state:
        state.conversation.incr("count")
        state.user.incr("count")
    await backend.open().write({await key_of(backend, "conversation"): WriteItem(b'{"v":1,"data":[]}')})
    turn = StateManager(backend.open()).turn(activity)
    async with turn:
        assert turn.duplicate
