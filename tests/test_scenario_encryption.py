"""Field encryption through real turns, on every storage that has landed: the stored bytes never hold the
plaintext, the bot reads it back, and tampering fails closed."""

from __future__ import annotations

import base64
import os

import msgspec
import pytest

from tests.support.activities import message, use_every_scope
from tests.support.backends import Backend
from turnstate import StateManager, WriteItem, document
from turnstate.errors import DecryptionError, KeyRingError, PlaintextFieldError, SecretValueError
from turnstate.keyring import KeyRing
from turnstate.reencrypt import reencrypt

EMAIL = "ann.example@contoso.test"
PHONE = "+1 555 0100 123"
REPORTER = "Reporter Person Name"
PATHS = ["user.email", "user.phone", "conversation.incident.reporter.*"]


def ring(*ids: str) -> KeyRing:
    return KeyRing({kid: bytes([i + 1]) * 32 for i, kid in enumerate(ids)}, primary=ids[0])


def manager(backend: Backend, keys: KeyRing, **options: object) -> StateManager:
    return StateManager(backend.open(), encrypt=PATHS, keys=keys, **options)  # type: ignore[arg-type]


async def raw_documents(backend: Backend) -> dict[str, bytes]:
    storage = backend.open()
    keys = [k async for k in storage.list_keys()]
    return {k: item.value for k, item in (await storage.read(keys)).items()}


async def write_pii(backend: Backend, keys: KeyRing, user: str = "29:user-1") -> None:
    async with manager(backend, keys).turn(message(user=user)) as state:
        state.user.set("email", EMAIL)
        state.user.set("phone", PHONE)
        state.user.set("name", "visible")
        state.conversation.set(
            "incident", {"title": "db down", "reporter": {"name": REPORTER, "team": "ops"}}
        )


async def copy_alice_onto_bob(backend: Backend) -> tuple[dict[str, bytes], str, str]:
    """Overwrite bob's user document with alice's stored bytes; return the documents as they were and the
    two keys."""
    docs = await raw_documents(backend)
    alice = next(k for k in docs if k.startswith("user/") and "alice" in k)
    bob = next(k for k in docs if k.startswith("user/") and "bob" in k)
    await backend.open().write({bob: WriteItem(docs[alice])})
    return docs, alice, bob


async def test_stored_bytes_hold_no_plaintext_and_the_bot_reads_it_back(backend: Backend) -> None:
    keys = ring("k1")
    await write_pii(backend, keys)
    stored = await backend.raw_bytes()  # the files, the Redis values, the memory store's bytes
    assert len(stored) > 200
    for secret in (EMAIL, PHONE, REPORTER, "ops"):
        assert secret.encode() not in stored
    assert b"visible" in stored and b"db down" in stored  # only the declared paths are encrypted
    async with manager(backend, keys).turn(message()) as state:
        assert state.user.get("email") == EMAIL
        assert state.user.get("phone", str) == PHONE
        assert state.get_value("conversation.incident.reporter.name") == REPORTER
        assert state.conversation.get("incident.reporter") == {"name": REPORTER, "team": "ops"}


async def test_unchanged_encrypted_document_is_not_rewritten(backend: Backend) -> None:
    keys = ring("k1")
    await write_pii(backend, keys)
    before = await raw_documents(backend)
    async with manager(backend, keys).turn(message()) as state:
        assert state.user.get("email") == EMAIL
        state.user.set("email", EMAIL)  # same plaintext: fresh nonces must not force a write
    assert await raw_documents(backend) == before


async def test_ciphertext_moved_to_another_user_fails(backend: Backend) -> None:
    keys = ring("k1")
    await write_pii(backend, keys, user="29:alice")
    await write_pii(backend, keys, user="29:bob")
    _, _, bob = await copy_alice_onto_bob(backend)
    with pytest.raises(DecryptionError) as info:
        async with manager(backend, keys).turn(message(user="29:bob")) as state:
            use_every_scope(state)  # an unreadable scope raises when used
    assert repr(bob) in str(info.value) and EMAIL not in str(info.value)


async def test_ciphertext_moved_to_another_field_fails(backend: Backend) -> None:
    keys = ring("k1")
    await write_pii(backend, keys)
    docs = await raw_documents(backend)
    key = next(k for k in docs if k.startswith("user/"))
    doc = document.decode(key, docs[key])
    swapped = dict(doc.data, email=doc.data["phone"], phone=doc.data["email"])
    await backend.open().write({key: WriteItem(document.encode(document.encode_data(swapped)))})
    with pytest.raises(DecryptionError) as info:
        async with manager(backend, keys).turn(message()) as state:
            use_every_scope(state)  # an unreadable scope raises when used
    assert "user.email" in str(info.value) or "user.phone" in str(info.value)


async def test_flipped_bit_and_unknown_key_fail(backend: Backend) -> None:
    keys = ring("k1")
    await write_pii(backend, keys)
    docs = await raw_documents(backend)
    key = next(k for k in docs if k.startswith("user/"))
    doc = document.decode(key, docs[key])
    version, kid, blob = doc.data["email"]["$enc"].split(".")
    raw = bytearray(base64.b64decode(blob))
    raw[-1] ^= 1
    for envelope in (f"{version}.{kid}.{base64.b64encode(bytes(raw)).decode()}", f"{version}.nokey.{blob}"):
        data = dict(doc.data, email={"$enc": envelope})
        await backend.open().write({key: WriteItem(document.encode(document.encode_data(data)))})
        with pytest.raises(DecryptionError) as info:
            async with manager(backend, keys).turn(message()) as state:
                use_every_scope(state)  # an unreadable scope raises when used
        assert EMAIL not in str(info.value)


async def test_plaintext_at_an_encrypted_path_fails_closed_unless_migrating(backend: Backend) -> None:
    async with StateManager(backend.open()).turn(message()) as state:
        state.user.set("email", EMAIL)  # written before encryption was turned on
    keys = ring("k1")
    with pytest.raises(PlaintextFieldError) as info:
        async with manager(backend, keys).turn(message()) as state:
            use_every_scope(state)  # an unreadable scope raises when used
    assert EMAIL not in str(info.value) and "user.email" in str(info.value)
    async with manager(backend, keys, migrate_plaintext=True).turn(message()) as state:
        assert state.user.get("email") == EMAIL
        state.user.set("seen", True)  # the next write encrypts it
    assert EMAIL.encode() not in await backend.raw_bytes()
    async with manager(backend, keys).turn(message()) as state:
        assert state.user.get("email") == EMAIL


async def test_rotation_keeps_documents_readable_and_reencrypt_leaves_none_under_the_old_key(
    backend: Backend,
) -> None:
    old = ring("k1")
    for user in ("29:a", "29:b", "29:c"):
        await write_pii(backend, old, user=user)
    rotated = old.with_key("k2", bytes([9]) * 32, primary=True)
    async with manager(backend, rotated).turn(message(user="29:a")) as state:
        assert state.user.get("email") == EMAIL  # old key still decrypts
        state.user.set("phone", "+1 555 0199")  # a write re-encrypts this document lazily
    enc = manager(backend, rotated).codec
    assert enc is not None
    windows = {k: document.decode(k, v).seen for k, v in (await raw_documents(backend)).items()}
    report = await reencrypt(backend.open(), enc, ttl_of=lambda key: None)  # type: ignore[arg-type]
    after = {k: document.decode(k, v).seen for k, v in (await raw_documents(backend)).items()}
    assert after == windows and all(windows.values())  # the redelivery windows survive the rewrite
    assert report.failed == 0 and report.rewritten >= 1
    stored = await backend.raw_bytes()
    assert b".k1." not in stored and b".k2." in stored
    new_only = rotated.without_key("k1")  # the old key can now be retired
    async with manager(backend, new_only).turn(message(user="29:b")) as state:
        assert state.user.get("email") == EMAIL


def test_missing_or_short_keys_fail_at_start(monkeypatch: pytest.MonkeyPatch, backend: Backend) -> None:
    monkeypatch.delenv("TURNSTATE_KEYS", raising=False)
    with pytest.raises(KeyRingError):
        StateManager(backend.open(), encrypt=PATHS, keys=KeyRing.from_env())
    short = base64.b64encode(os.urandom(31)).decode()
    monkeypatch.setenv("TURNSTATE_KEYS", f"k1:{short}")
    with pytest.raises(KeyRingError) as info:
        KeyRing.from_env()
    assert short not in str(info.value)
    with pytest.raises(ValueError, match="keys"):
        StateManager(backend.open(), encrypt=PATHS)
    with pytest.raises(ValueError, match="unknown scopes"):
        StateManager(backend.open(), encrypt=["temp.x"], keys=ring("k1"))


async def test_async_key_provider_is_loaded_by_the_first_turn(backend: Backend) -> None:
    calls = 0

    async def provider() -> KeyRing:
        nonlocal calls
        calls += 1
        return ring("k1")

    m = StateManager(backend.open(), encrypt=PATHS, keys=provider)
    for _ in range(2):
        async with m.turn(message()) as state:
            state.user.set("email", EMAIL)
    assert calls == 1
    assert EMAIL.encode() not in await backend.raw_bytes()


async def test_jwt_and_bearer_tokens_are_refused_unless_allowed(backend: Backend) -> None:
    header = (
        base64.urlsafe_b64encode(msgspec.json.encode({"alg": "RS256", "typ": "JWT"})).rstrip(b"=").decode()
    )
    body = base64.urlsafe_b64encode(msgspec.json.encode({"sub": "ann", "aud": "api"})).rstrip(b"=").decode()
    jwt = f"{header}.{body}.{base64.urlsafe_b64encode(os.urandom(32)).rstrip(b'=').decode()}"
    m = StateManager(backend.open(), allow_secrets=["user.oauth.*"])
    async with m.turn(message()) as state:
        for path, value in (("conversation.token", jwt), ("user.auth", {"header": f"Bearer {jwt}"})):
            with pytest.raises(SecretValueError) as info:
                state.set_value(path, value)
            assert jwt not in str(info.value) and "Key Vault" in str(info.value) and path in str(info.value)
        state.set_value("user.oauth.cached", jwt)  # explicitly allowed
    async with m.turn(message()) as state:
        assert state.user.get("oauth.cached") == jwt
        assert not state.conversation.has("token")


async def test_unchanged_encrypted_fields_keep_their_envelope_and_changed_ones_get_a_new_one(
    backend: Backend,
) -> None:
    keys = ring("k1")
    await write_pii(backend, keys)

    async def envelopes() -> dict[str, str]:
        docs = await raw_documents(backend)
        key = next(k for k in docs if k.startswith("user/"))
        data = document.decode(key, docs[key]).data
        return {name: data[name]["$enc"] for name in ("email", "phone")}

    before = await envelopes()
    async with manager(backend, keys).turn(message()) as state:
        state.user.set("name", "changed")  # the document is written, its encrypted fields unchanged
    assert await envelopes() == before
    async with manager(backend, keys).turn(message()) as state:
        state.user.set("phone", "+1 555 0142")
    after = await envelopes()
    assert after["email"] == before["email"] and after["phone"] != before["phone"]
    rotated = keys.with_key("k2", bytes([7]) * 32, primary=True)
    async with manager(backend, rotated).turn(message()) as state:
        state.user.set("name", "again")  # a write under a new primary key re-encrypts every field
    assert all(".k2." in envelope for envelope in (await envelopes()).values())


async def test_a_manager_that_remembers_plaintext_still_rejects_moved_and_altered_envelopes(
    backend: Backend,
) -> None:
    """One long-lived manager wrote and read the envelopes (so it remembers their plaintext); the same
    envelopes copied to another user or field, or altered, still fail in its turns."""
    keys = ring("k1")
    bot = manager(backend, keys)
    for user in ("29:alice", "29:bob"):
        async with bot.turn(message(user=user)) as state:
            state.user.set("email", EMAIL)
            state.user.set("phone", PHONE)
        async with bot.turn(message(user=user)) as state:
            assert state.user.get("email") == EMAIL
    docs, alice, bob = await copy_alice_onto_bob(backend)
    storage = backend.open()
    with pytest.raises(DecryptionError) as info:
        async with bot.turn(message(user="29:bob")) as state:
            use_every_scope(state)  # an unreadable scope raises when used
    assert repr(bob) in str(info.value) and EMAIL not in str(info.value)

    doc = document.decode(alice, docs[alice])
    swapped = dict(doc.data, email=doc.data["phone"], phone=doc.data["email"])
    await storage.write({alice: WriteItem(document.encode(document.encode_data(swapped)))})
    with pytest.raises(DecryptionError, match=r"user\.email|user\.phone"):
        async with bot.turn(message(user="29:alice")) as state:
            use_every_scope(state)  # an unreadable scope raises when used

    version, kid, blob = doc.data["email"]["$enc"].split(".")
    raw = bytearray(base64.b64decode(blob))
    raw[0] ^= 1
    altered = dict(doc.data, email={"$enc": f"{version}.{kid}.{base64.b64encode(bytes(raw)).decode()}"})
    await storage.write({alice: WriteItem(document.encode(document.encode_data(altered)))})
    with pytest.raises(DecryptionError, match="authentication failed"):
        async with bot.turn(message(user="29:alice")) as state:
            use_every_scope(state)  # an unreadable scope raises when used
    # put back as it was, the document reads again in the same manager
    await storage.write({alice: WriteItem(docs[alice])})
    async with bot.turn(message(user="29:alice")) as state:
        assert state.user.get("email") == EMAIL and state.user.get("phone") == PHONE


async def test_decrypted_cache_off_is_passed_to_field_encryption(backend: Backend) -> None:
    async def provider() -> KeyRing:
        return ring("k1")

    for keys in (ring("k1"), provider):
        bot = StateManager(backend.open(), encrypt=PATHS, keys=keys, decrypted_cache=0)
        await bot.load_keys()
        assert "decrypted_cache=0" in repr(bot.codec)
    with pytest.raises(ValueError, match="decrypted_cache must be 0"):
        StateManager(backend.open(), encrypt=PATHS, keys=provider, decrypted_cache=-1)


async def test_managers_that_keep_documents_decrypted_see_each_others_writes(backend: Backend) -> None:
    """Two long-lived managers (two processes) each keep the documents they wrote decrypted; a document
    the other one rewrote since is read as stored, never from what was kept."""
    keys = ring("k1")
    a, b = manager(backend, keys), manager(backend, keys)
    async with a.turn(message()) as state:
        state.user.set("email", EMAIL)
        state.user.set("visits", 1)
    async with b.turn(message()) as state:
        assert state.user.get("email") == EMAIL
        state.user.set("email", "new.address@contoso.test")
        state.user.incr("visits")
    for bot, visits in ((a, 3), (b, 4), (a, 5)):
        async with bot.turn(message()) as state:
            assert state.user.get("email") == "new.address@contoso.test"
            state.user.incr("visits")
        async with bot.turn(message()) as state:  # its own write, found decrypted
            assert state.user.get("visits") == visits
    for value in (await raw_documents(backend)).values():
        assert b"new.address" not in value and EMAIL.encode() not in value


ALONG = "Zoe Example, +1-555-0100"


async def test_a_value_that_is_not_an_object_along_a_declared_path_is_never_stored_in_plaintext(
    backend: Backend,
) -> None:
    """``conversation.incident.reporter.*`` declared: a reporter set to a string, list, number or bool is
    stored as one envelope and read back, in this manager (which keeps what it wrote decrypted) and a new
    one; plaintext written there by anything else is refused."""
    keys = ring("k1")
    bot = manager(backend, keys)
    cold = manager(backend, keys, decrypted_cache=0)  # keeps documents in their stored form
    values = (ALONG, [ALONG, "+1-555-0199"], 15550100, True, {"name": ALONG}, "Zoe Example again")
    for value, writer in zip(values, (bot, cold) * 3, strict=True):
        async with writer.turn(message()) as state:
            state.conversation.set("incident.reporter", value)
            state.conversation.set("incident.title", "db down")
        stored = await backend.raw_bytes()
        for secret in (b"Zoe Example", b"555-0199", b"15550100"):
            assert secret not in stored
        assert b"db down" in stored
        written = await raw_documents(backend)
        for reader in (bot, cold, manager(backend, keys)):
            for _ in range(2):  # the second load finds the document as this manager last saw it
                async with reader.turn(message()) as state:
                    assert state.conversation.get("incident.reporter") == value
                    state.conversation.set("incident.reporter", value)  # the same value: nothing to write
        assert await raw_documents(backend) == written
    docs = await raw_documents(backend)
    key = next(k for k in docs if k.startswith("conversation/"))
    for plain in (ALONG, [ALONG], 15550100, False):
        data = {"incident": {"title": "db down", "reporter": plain}}
        await backend.open().write({key: WriteItem(document.encode(document.encode_data(data)))})
        for reader in (bot, cold, manager(backend, keys)):
            with pytest.raises(PlaintextFieldError) as info:
                async with reader.turn(message()) as state:
                    use_every_scope(state)  # an unreadable scope raises when used
            assert "conversation.incident.reporter" in str(info.value) and "Zoe" not in str(info.value)
    async with manager(backend, keys, migrate_plaintext=True).turn(message()) as state:
        assert state.conversation.get("incident.reporter") is False
        state.conversation.set("incident.reporter", ALONG)
    assert b"Zoe Example" not in await backend.raw_bytes()
    async with bot.turn(message()) as state:
        assert state.conversation.get("incident.reporter") == ALONG
