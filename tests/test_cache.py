"""The decoded-document cache: copies that cannot leak into each other, and bytes as the only truth."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import msgspec
import pytest

from tests.support.activities import message
from tests.support.backends import Backend
from turnstate import CorruptDocumentError, MemoryStorage, StateManager
from turnstate.cache import DocumentCache
from turnstate.crypto import FieldEncryption
from turnstate.document import decode, encode, encode_data
from turnstate.errors import DecryptionError
from turnstate.keyring import KeyRing


def stored(data: dict[str, Any], seen: bytes = b"") -> bytes:
    return encode(encode_data(data), None, seen)


def test_a_hit_is_an_equal_copy_whose_objects_and_lists_are_its_own() -> None:
    cache = DocumentCache(8)
    value = stored({"n": 1, "profile": {"tags": ["a"]}, "items": [{"x": 1}]}, b"|0123456789ab00000a")
    first, _, _, _ = cache.load("k", value)
    second, _, seen, _ = cache.load("k", value)
    assert second == first == decode("k", value).data
    assert seen == b"|0123456789ab00000a"
    second["profile"]["tags"].append("b")
    second["items"][0]["x"] = 2
    second["n"] = 2
    assert cache.load("k", value)[0] == {"n": 1, "profile": {"tags": ["a"]}, "items": [{"x": 1}]}


def test_bytes_that_differ_in_any_way_are_decoded_afresh() -> None:
    cache = DocumentCache(8)
    cache.load("k", stored({"n": 1}))
    assert cache.load("k", stored({"n": 2}))[0] == {"n": 2}
    assert cache.load("k", bytes(stored({"n": 2})))[0] == {"n": 2}  # equal bytes, another object


def test_kept_data_is_copied_so_later_changes_do_not_reach_it() -> None:
    cache = DocumentCache(8)
    for data_bytes in (None, encode_data({"n": 1, "l": [1]})):
        data: dict[str, Any] = {"n": 1, "l": [1]}
        value = stored(data)
        cache.keep("k", value, data, {}, b"", data_bytes=data_bytes)
        data["n"] = 2
        data["l"].append(2)
        assert cache.load("k", value)[0] == {"n": 1, "l": [1]}


def test_flat_documents_found_from_their_bytes_are_copied_too() -> None:
    cache = DocumentCache(8)
    data = {"a": "text with { and [ inside", "b": 1}
    value = stored(data)
    cache.keep("k", value, data, {}, b"", data_bytes=encode_data(data))
    copy, _, _, _ = cache.load("k", value)
    copy["a"] = "changed"
    assert cache.load("k", value)[0] == {"a": "text with { and [ inside", "b": 1}


def test_the_oldest_kept_document_goes_first_and_large_ones_are_not_kept() -> None:
    cache = DocumentCache(2, max_document_bytes=200)
    for key in ("a", "b", "c"):
        cache.load(key, stored({"key": key}))
    assert len(cache) == 2
    cache.keep("b", stored({"key": "b2"}), {"key": "b2"}, {}, b"")  # rewritten: now the newest
    cache.load("d", stored({"key": "d"}))
    assert len(cache) == 2
    assert cache.load("b", stored({"key": "b2"}))[0] == {"key": "b2"}
    cache.forget("b")
    assert len(cache) == 1
    large = stored({"pad": "x" * 300})
    assert cache.load("e", large)[0] == {"pad": "x" * 300}  # decoded, not kept
    assert len(cache) == 1
    cache.clear()
    assert len(cache) == 0
    with pytest.raises(ValueError, match="at least one document"):
        DocumentCache(0)


def test_documents_nested_past_the_recursion_limit_are_refused_or_not_kept() -> None:
    cache = DocumentCache(8)
    too_deep = b'{"v":1,"data":{"x":' + b"[" * 5000 + b"]" * 5000 + b"}}"
    with pytest.raises(CorruptDocumentError, match=r"'k'.*nested too deeply"):
        cache.load("k", too_deep)
    deep: list[Any] = []
    for _ in range(5000):
        deep = [deep]
    cache.keep("k", b"stands for a document too deep to copy", {"x": deep}, {}, b"")
    assert len(cache) == 0


def test_corrupt_bytes_raise_and_are_not_kept() -> None:
    cache = DocumentCache(8)
    with pytest.raises(CorruptDocumentError, match="'k'"):
        cache.load("k", b"not json")
    assert len(cache) == 0


async def test_a_write_from_another_process_is_seen_by_the_next_turn(shared_backend: Backend) -> None:
    here, there = StateManager(shared_backend.open()), StateManager(shared_backend.open())
    async with here.turn(message()) as state:
        state.conversation.set("owner", "ann")
    async with there.turn(message()) as state:
        state.conversation.set("owner", "bob")
    async with here.turn(message()) as state:
        assert state.conversation.get("owner") == "bob"


async def test_a_failed_turns_in_place_edits_do_not_reach_the_next_turn() -> None:
    manager = StateManager(MemoryStorage())
    async with manager.turn(message()) as state:
        state.user.set("profile", {"tags": ["a"], "name": "Ann"})
    with pytest.raises(RuntimeError):
        async with manager.turn(message()) as state:
            profile = state.user.get("profile")
            profile["tags"].append("b")
            profile["name"] = "Bob"
            raise RuntimeError("the handler failed")
    async with manager.turn(message()) as state:
        assert state.user.get("profile") == {"tags": ["a"], "name": "Ann"}


async def test_in_place_edits_are_read_back_in_their_stored_form() -> None:
    manager = StateManager(MemoryStorage())
    async with manager.turn(message()) as state:
        state.conversation.set("items", [1])
    async with manager.turn(message()) as state:
        items = state.conversation.get("items")
        items.append((2, 3))  # a tuple, put in place: stored as a JSON array
    items.append(99)  # after the turn: not stored, and not to be seen by any later turn
    async with manager.turn(message()) as state:
        assert state.conversation.get("items") == [1, [2, 3]]


async def test_a_merge_functions_result_is_read_back_in_its_stored_form() -> None:
    storage = MemoryStorage()
    options: dict[str, Any] = {"merge": {"conversation.pair": lambda base, ours, theirs: (ours, theirs)}}
    a, b = StateManager(storage, **options), StateManager(storage, **options)
    both_loaded = asyncio.Barrier(2)

    async def turn(manager: StateManager, value: int) -> None:
        async with manager.turn(message()) as state:
            await both_loaded.wait()
            state.conversation.set("pair", value)

    await asyncio.gather(turn(a, 1), turn(b, 2))
    for manager in (a, b):
        async with manager.turn(message()) as state:
            pair = state.conversation.get("pair")
            assert isinstance(pair, list) and sorted(pair) == [1, 2]


async def test_encrypted_fields_stay_encrypted_in_the_cache_when_no_plaintext_is_remembered() -> None:
    manager = StateManager(
        MemoryStorage(), encrypt=["user.email"], keys=KeyRing({"k1": bytes(range(32))}), decrypted_cache=0
    )
    async with manager.turn(message()) as state:
        state.user.set("email", "ann@contoso.example")
    async with manager.turn(message()) as state:
        assert state.user.get("email") == "ann@contoso.example"  # a hit, decrypted for the turn
        state.user.set("n", 1)
    assert manager.documents is not None and len(manager.documents) == 1  # the user document
    documents = manager.documents
    kept = b"".join(msgspec.json.encode(documents.get(key)) for key in documents)
    assert b"ann@contoso" not in kept and b'"$enc"' in kept


async def test_remembered_plaintext_keeps_written_documents_decrypted_for_their_codec_only() -> None:
    storage = MemoryStorage()
    manager = StateManager(storage, encrypt=["user.email"], keys=KeyRing({"k1": bytes(range(32))}))
    async with manager.turn(message()) as state:
        state.user.set("email", "ann@contoso.example")
        state.user.set("profile", {"tags": ["a"]})
    documents = manager.documents
    assert documents is not None
    (key,) = documents
    stored = (await storage.read([key]))[key].value
    hit = documents.opened(key, stored, manager.codec)
    assert hit is not None and hit[0]["email"] == "ann@contoso.example"
    assert documents.opened(key, stored + b" ", manager.codec) is None  # other bytes
    other = FieldEncryption(["user.email"], KeyRing({"k1": bytes(range(32))}))
    assert documents.opened(key, stored, other) is None  # another codec, even with the same key
    for _ in range(2):  # the second time after a turn that set only a scalar, so kept what it knew
        with pytest.raises(RuntimeError):  # each turn gets its own copy: a failed turn's edit is gone
            async with manager.turn(message()) as state:
                state.user.get("profile")["tags"].append("b")
                raise RuntimeError("the handler failed")
        async with manager.turn(message()) as state:
            assert state.user.get("email") == "ann@contoso.example"
            state.user.incr("visits")
        async with manager.turn(message()) as state:
            assert state.user.get("profile") == {"tags": ["a"]}
            stored = (await storage.read([key]))[key].value
    assert documents.opened(key, stored, manager.codec) is not None
    # a load that is not the codec's sees the stored form, never the remembered plaintext
    data, _, _, _ = documents.load(key, (await storage.read([key]))[key].value)
    assert data["email"] != "ann@contoso.example" and set(data["email"]) == {"$enc"}
    async with manager.turn(message()) as state:
        state.user.set("n", 1)  # written again: kept decrypted again
    kept = documents.get(key)
    assert kept is not None and kept.opener is manager.codec
    # a manager without the key fails, whatever another one kept
    other_manager = StateManager(storage, encrypt=["user.email"], keys=KeyRing({"k2": bytes(range(1, 33))}))
    with pytest.raises(DecryptionError, match="k1"):
        async with other_manager.turn(message()) as state:
            state.user.get("email")


async def test_the_cache_can_be_turned_off() -> None:
    manager = StateManager(MemoryStorage(), document_cache=0)
    assert manager.documents is None
    async with manager.turn(message()) as state:
        state.conversation.incr("count")
    async with manager.turn(message()) as state:
        assert state.conversation.get("count") == 1
    with pytest.raises(ValueError, match="document_cache"):
        StateManager(MemoryStorage(), document_cache=-1)


async def test_only_declared_encrypted_fields_share_their_stored_objects() -> None:
    manager = StateManager(
        MemoryStorage(), encrypt=["user.email", "user.card.*"], keys=KeyRing({"k1": bytes(range(32))})
    )
    async with manager.turn(message()) as state:
        state.user.set("email", "ann@contoso.example")
        state.user.set("card", {"number": "4111"})
        state.user.set("lookalike", {"$enc": "not an envelope"})  # a plain field shaped like one
    for _ in range(2):  # the second turn loads what the first kept at its commit
        with pytest.raises(RuntimeError):
            async with manager.turn(message()) as state:
                state.user.get("lookalike")["$enc"] = "edited"
                state.user.get("card")["number"] = "0000"
                state.user.set("n", 1)
                raise RuntimeError("the handler failed")
        async with manager.turn(message()) as state:
            assert state.user.get("lookalike") == {"$enc": "not an envelope"}
            assert state.user.get("card") == {"number": "4111"}
            assert state.user.get("email") == "ann@contoso.example"
            state.user.set("n", 2)


def test_shared_envelopes_are_shared_and_every_other_object_is_copied() -> None:
    """A document whose only objects are shared envelopes is kept without a walk; one more object of any
    kind (or an envelope-shaped value under a name not shared) is copied for each turn."""
    envelope = {"$enc": "v1.k1.AAAA"}
    for data, copied in (
        ({"email": envelope, "note": "{not an object}"}, ()),
        ({"email": envelope, "profile": {"a": 1}}, ("profile",)),
        ({"email": envelope, "other": {"$enc": "v1.k1.BBBB"}}, ("other",)),
        ({"email": "plaintext", "profile": {"a": 1}}, ("profile",)),
    ):
        cache = DocumentCache(8)
        value = stored(data)
        cache.keep(
            "user/a", value, data, {}, b"", data_bytes=encode_data(data), shared=frozenset({"email", "phone"})
        )
        first, _, _, _ = cache.load("user/a", value)
        second, _, _, _ = cache.load("user/a", value)
        assert first == second == data
        if type(data["email"]) is dict:
            assert first["email"] is second["email"]  # envelopes are never edited in place: shared
        for name in copied:
            assert first[name] is not second[name] and first[name] is not data[name]


async def test_a_turns_bookkeeping_shows_no_field_value_in_reprs() -> None:
    manager = StateManager(MemoryStorage(), encrypt=["user.email"], keys=KeyRing({"k1": bytes(range(32))}))
    async with manager.turn(message()) as state:
        state.user.set("email", "ann@contoso.example")
        state.user.set("note", "plain words")
    turn = manager.turn(message())
    await turn.load()
    # everything the turn holds, as a traceback printer showing locals would render it
    held = [item for obj in gc.get_referents(turn) if isinstance(obj, list) for item in obj]
    assert held
    for item in held:
        shown = f"{item!r} {item.__rich_repr__()!r}"
        assert "ann@contoso" not in shown and "plain words" not in shown and "/" in shown
    turn.discard()


async def test_a_document_kept_after_a_scalar_only_turn_still_copies_its_objects() -> None:
    """A turn that set only scalars keeps the document with the fields that held objects at load; every
    later turn still gets its own copy of them, and a field that became an object is found too."""
    manager = StateManager(MemoryStorage())
    async with manager.turn(message()) as state:
        state.user.set("profile", {"tags": ["a"]})
    for change in ("n", "settings"):
        async with manager.turn(message()) as state:
            if change == "n":
                state.user.incr("n")  # scalar only: the loaded shape is reused
            else:
                state.user.set("settings", {"lang": "en"})  # a new object: looked for again
        for name, original in (("profile", {"tags": ["a"]}), ("settings", {"lang": "en"})):
            if change == "n" and name == "settings":
                continue
            with pytest.raises(RuntimeError):
                async with manager.turn(message()) as state:
                    state.user.get(name)[next(iter(original))] = "edited"
                    raise RuntimeError("the handler failed")
            async with manager.turn(message()) as state:
                assert state.user.get(name) == original
