"""Hostile documents on every storage: corrupt ones of every kind and tampered ciphertexts, each in place of
a user's document. The user scope raises a typed error when used, naming the key and never a stored value
(nor does any log line), the conversation scope keeps working and commits, and the bad document is left
exactly as it was."""

from __future__ import annotations

import base64
import logging

import pytest

from tests.support.activities import message
from tests.support.backends import Backend
from turnstate import (
    CorruptDocumentError,
    DecryptionError,
    InvalidItemError,
    PlaintextFieldError,
    StateManager,
    WriteItem,
)
from turnstate.document import decode, encode, encode_data
from turnstate.keyring import KeyRing

SECRET = "zoe.secret@contoso.example"
KEYS = KeyRing({"k1": bytes(range(32))})

CORRUPT = {
    "not JSON": b"\x00\xff not json",
    "not an object": b'["v", 1]',
    "no version": b'{"data":{}}',
    "a later format": b'{"v":7,"data":{}}',
    "fields not an object": b'{"v":1,"data":[1,2]}',
    "too deeply nested": b'{"v":1,"data":{"x":' + b"[" * 5000 + b"]" * 5000 + b"}}",
    "a window that is not a string": b'{"v":1,"data":{},"recent":12}',
    "a window with escapes": b'{"v":1,"data":{},"recent":"|0123456789ab00abcd1\\u0022"}',
}


def _tampered(envelope: dict[str, str], how: str) -> dict[str, str]:
    version, kid, blob = envelope["$enc"].split(".", 2)
    raw = bytearray(base64.b64decode(blob))
    if how == "flipped":
        raw[-1] ^= 1
        return {"$enc": f"{version}.{kid}.{base64.b64encode(bytes(raw)).decode()}"}
    if how == "unknown key":
        return {"$enc": f"{version}.k9.{blob}"}
    if how == "truncated":
        return {"$enc": f"{version}.{kid}.{blob[:8]}"}
    return {"$enc": "v1"}  # malformed


async def _user_key(backend: Backend, manager: StateManager) -> str:
    async with manager.turn(message()) as state:
        state.user.set("email", SECRET)
        state.conversation.set("count", 1)
    [key] = [k async for k in backend.open().list_keys("user/")]
    return key


async def _check_spoiled(
    backend: Backend,
    manager: StateManager,
    key: str,
    bad: bytes,
    error: type[Exception],
    caplog: pytest.LogCaptureFixture,
) -> None:
    storage = backend.open()
    stored = (await storage.read([key]))[key]
    try:
        await storage.write({key: WriteItem(bad, stored.etag)})
    except InvalidItemError:
        # a storage that keeps values as JSON objects cannot hold this one at all: it says so, typed
        assert (await storage.read([key]))[key].value == stored.value
        return
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="turnstate"):
        async with manager.turn(message()) as state:
            with pytest.raises(error) as raised:
                state.user.get("email")
            state.conversation.incr("count")  # the readable scope works, and commits
    assert repr(key) in str(raised.value)
    shown = str(raised.value) + repr(raised.value) + "".join(r.getMessage() for r in caplog.records)
    assert SECRET not in shown and "zoe" not in shown
    assert (await storage.read([key]))[key].value == bad  # never written by the turn
    async with StateManager(backend.open(), encrypt=["user.email"], keys=KEYS).turn(message()) as state:
        assert state.conversation.get("count") == 2


@pytest.mark.parametrize("kind", sorted(CORRUPT))
async def test_a_corrupt_document_spoils_only_its_scope(
    backend: Backend, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    manager = StateManager(backend.open(), encrypt=["user.email"], keys=KEYS)
    key = await _user_key(backend, manager)
    await _check_spoiled(backend, manager, key, CORRUPT[kind], CorruptDocumentError, caplog)


@pytest.mark.parametrize("how", ["flipped", "unknown key", "truncated", "malformed", "plaintext"])
async def test_a_tampered_ciphertext_spoils_only_its_scope(
    backend: Backend, how: str, caplog: pytest.LogCaptureFixture
) -> None:
    manager = StateManager(backend.open(), encrypt=["user.email"], keys=KEYS)
    key = await _user_key(backend, manager)
    doc = decode(key, (await backend.open().read([key]))[key].value)
    if how == "plaintext":
        fields = dict(doc.data, email="zoe.plain@contoso.example")
        error: type[Exception] = PlaintextFieldError
    else:
        fields = dict(doc.data, email=_tampered(doc.data["email"], how))
        error = DecryptionError
    await _check_spoiled(
        backend, manager, key, encode(encode_data(fields), doc.meta, doc.seen), error, caplog
    )
