"""A codec of the application's own in place of field encryption: a small reversible transform (ROT13 of
the user scope's string fields) passed as ``StateManager(storage, codec=...)`` runs through real turns on
every storage: values round-trip, storage holds the transformed form, concurrent turns merge."""

from __future__ import annotations

import codecs
from typing import Any

from tests.support.activities import message
from tests.support.backends import Backend
from turnstate import FieldCodec, StateManager
from turnstate.codec import Sealed

NAME = "Ann Example"
CITY = "Springfield"


class Rot13:
    """ROT13 of the top-level string fields of the user scope, on the way to storage and back."""

    def __init__(self) -> None:
        self.loads: list[str] = []
        self.stores: list[str] = []

    @property
    def scopes(self) -> frozenset[str]:
        return frozenset({"user"})

    def decrypt_data(
        self, scope: str, storage_key: str, data: dict[str, Any], sealed: Sealed | None = None
    ) -> dict[str, Any]:
        self.loads.append(storage_key)
        for name, value in data.items():
            if isinstance(value, str):
                data[name] = codecs.encode(value, "rot13")
        return data

    def encrypt_data(
        self, scope: str, storage_key: str, data: dict[str, Any], sealed: Sealed | None = None
    ) -> dict[str, Any]:
        self.stores.append(storage_key)
        return {n: codecs.encode(v, "rot13") if isinstance(v, str) else v for n, v in data.items()}


def bot(backend: Backend, codec: FieldCodec) -> StateManager:
    return StateManager(backend.open(), codec=codec)


async def test_values_round_trip_and_storage_holds_the_transformed_form(backend: Backend) -> None:
    codec = Rot13()
    async with bot(backend, codec).turn(message()) as state:
        state.user.set("name", NAME)
        state.user.set("visits", 1)
        state.conversation.set("topic", "plain text")
    stored = await backend.raw_bytes()
    assert codecs.encode(NAME, "rot13").encode() in stored and NAME.encode() not in stored
    assert b"plain text" in stored  # a scope the codec does not name is stored as it is
    assert codec.stores and all(key.startswith("user/") for key in codec.stores)
    # the codec that wrote it, and another instance (another process)
    for visits, reader in enumerate((bot(backend, codec), bot(backend, Rot13())), start=1):
        async with reader.turn(message()) as state:
            assert state.user.get("name") == NAME
            assert state.user.get("visits") == visits
            assert state.conversation.get("topic") == "plain text"
            state.user.incr("visits")
    async with bot(backend, Rot13()).turn(message()) as state:
        assert state.user.to_dict() == {"name": NAME, "visits": 3}


async def test_an_unchanged_document_is_not_rewritten(backend: Backend) -> None:
    codec = Rot13()
    async with bot(backend, codec).turn(message()) as state:
        state.user.set("name", NAME)
    before = await backend.raw_bytes()
    async with bot(backend, codec).turn(message(activity_id=None)) as state:
        assert state.user.get("name") == NAME
        state.user.set("name", NAME)  # the same value: the transformed form equals the stored bytes
    assert await backend.raw_bytes() == before


async def test_concurrent_turns_merge_through_the_codec(backend: Backend) -> None:
    codec = Rot13()
    async with bot(backend, codec).turn(message()) as state:
        state.user.set("name", NAME)
        state.user.set("visits", 0)
    first, second = bot(backend, codec), bot(backend, Rot13())
    async with first.turn(message()) as one:
        async with second.turn(message()) as two:
            two.user.set("city", CITY)
            two.user.incr("visits")
        one.user.set("name", NAME + " Jr")  # commits after the other turn: merged onto what it wrote
        one.user.incr("visits")
    assert first.stats.merges >= 1
    stored = await backend.raw_bytes()
    for plain in (NAME.encode(), CITY.encode()):
        assert plain not in stored
    assert codecs.encode(CITY, "rot13").encode() in stored
    async with bot(backend, Rot13()).turn(message()) as state:
        assert state.user.to_dict() == {"name": NAME + " Jr", "visits": 2, "city": CITY}
