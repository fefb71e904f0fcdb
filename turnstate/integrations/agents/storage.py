"""The Microsoft 365 Agents SDK's ``Storage`` over any turnstate storage.

The SDK keeps OAuth sign-in flows (``auth/{channel}/{user}/{handler}``), proactive conversation references
and, for agents that keep its ``AgentState``, conversation and user state (``{channel}/conversations/{id}``,
``{channel}/users/{id}``) in its ``Storage``. :class:`AgentsStorage` puts them in a turnstate storage
(Memory, File, Redis, Cosmos), with a time to live per key prefix and field encryption.

Concurrency: last writer wins, as in the SDK's own storages. The SDK's storage interface carries no
version: its callers read an item, change it and write it back whole, and none of them expects a
conflict error, so a conditional write could only turn a lost update into a failed sign-in or turn.
Each write is therefore unconditional (``ANY_ETAG``) and whole. State that needs concurrent updates to
merge belongs in the turnstate TurnState (:mod:`turnstate.integrations.agents.state`), whose commits are
ETag compare-and-set with field merging.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

import msgspec
from microsoft_agents.hosting.core.storage import Storage as SdkStorage
from microsoft_agents.hosting.core.storage import StoreItem

from turnstate.crypto import FieldEncryption
from turnstate.errors import CorruptDocumentError, InvalidItemError
from turnstate.storage.base import ANY_ETAG, Storage, WriteItem, check_keys

StoreItemT = TypeVar("StoreItemT", bound=StoreItem)

ITEM_SCOPE = "item"
"""The scope name field encryption paths start with for SDK items: ``"item.token"``, ``"item.*.email"``."""

_decoder = msgspec.json.Decoder(dict[str, Any])


class AgentsStorage(SdkStorage):
    """The SDK's ``Storage`` (read, write, delete of ``StoreItem`` JSON) over a turnstate ``storage``.

    ``ttl``: seconds to live per key prefix, applied on every write; the longest matching prefix wins and
    ``None`` keeps the item until deleted (``{"auth/": 900}`` expires sign-in flows 15 minutes after their
    last write). ``encryption``: a :class:`~turnstate.FieldEncryption` whose paths start with
    ``"item."`` (:data:`ITEM_SCOPE`); those fields are stored AES-256-GCM encrypted, bound to the key.

    Items are stored as their ``store_item_to_json()`` JSON, byte for byte what the SDK's MemoryStorage
    keeps for the same key, so state written by the SDK's storages under the same keys reads back as is.
    Writes are unconditional: last writer wins (see the module docstring).
    """

    def __init__(
        self,
        storage: Storage,
        *,
        ttl: Mapping[str, float | None] | None = None,
        encryption: FieldEncryption | None = None,
    ) -> None:
        if not isinstance(storage, Storage):
            raise TypeError(f"storage must be a turnstate Storage, got {type(storage).__name__}")
        prefixes = dict(ttl or {})
        for prefix, seconds in prefixes.items():
            if seconds is not None and not seconds > 0:
                raise ValueError(
                    f"ttl for key prefix {prefix!r} must be a positive number of seconds or None, "
                    f"got {seconds!r}"
                )
        if encryption is not None:
            foreign = encryption.scopes - {ITEM_SCOPE}
            if foreign:
                raise ValueError(
                    f"AgentsStorage encrypts paths under {ITEM_SCOPE!r} (e.g. 'item.token'); got paths "
                    f"under {', '.join(sorted(foreign))}"
                )
        self.storage = storage
        self._ttl = sorted(prefixes.items(), key=lambda entry: len(entry[0]), reverse=True)
        self._encryption = encryption

    def ttl_for(self, key: str) -> float | None:
        """The time to live a write of ``key`` gets: that of the longest matching prefix, or None."""
        for prefix, seconds in self._ttl:
            if key.startswith(prefix):
                return seconds
        return None

    async def read(
        self, keys: list[str], *, target_cls: type[StoreItemT] | None = None, **kwargs: Any
    ) -> dict[str, StoreItemT]:
        """Read ``keys``; each stored item comes back as ``target_cls.from_json_to_store_item(json)``.

        Absent and expired keys are left out. ``target_cls`` is required, as in the SDK.
        """
        if target_cls is None:
            raise TypeError("AgentsStorage.read() needs target_cls, the StoreItem class to build items with")
        if not keys:
            return {}
        check_keys(keys)
        stored = await self.storage.read(list(dict.fromkeys(keys)))
        result: dict[str, StoreItemT] = {}
        for key, item in stored.items():
            data = self._decode(key, item.value)
            result[key] = target_cls.from_json_to_store_item(data)  # type: ignore[assignment]
        return result

    async def write(self, changes: dict[str, StoreItem]) -> None:
        """Write each item's ``store_item_to_json()`` unconditionally (last writer wins), with its TTL."""
        if not changes:
            return
        check_keys(changes)
        items: dict[str, WriteItem] = {}
        for key, value in changes.items():
            items[key] = WriteItem(self._encode(key, value), ANY_ETAG, self.ttl_for(key))
        await self.storage.write(items)

    async def delete(self, keys: list[str]) -> None:
        """Delete ``keys``; unknown keys are ignored."""
        keys = list(keys)
        if not keys:
            return
        check_keys(keys)
        await self.storage.delete(keys)

    def _encode(self, key: str, value: object) -> bytes:
        to_json = getattr(value, "store_item_to_json", None)
        if to_json is None:
            raise InvalidItemError(
                key,
                f"expected a StoreItem (with store_item_to_json()), got {type(value).__name__}; wrap the "
                "value in a StoreItem class",
            )
        data = to_json()
        if not isinstance(data, Mapping):
            raise InvalidItemError(
                key, f"store_item_to_json() returned {type(data).__name__}, not a JSON object"
            )
        data = dict(data)
        if self._encryption is not None:
            data = self._encryption.encrypt_data(ITEM_SCOPE, key, data)
        try:
            return msgspec.json.encode(data)
        except (TypeError, ValueError, OverflowError) as exc:
            raise InvalidItemError(key, f"its JSON form cannot be encoded: {exc}") from None

    def _decode(self, key: str, value: bytes) -> dict[str, Any]:
        try:
            data = _decoder.decode(value)
        except msgspec.DecodeError as exc:
            raise CorruptDocumentError(key, f"not a JSON object ({exc})") from None
        if self._encryption is not None:
            data = self._encryption.decrypt_data(ITEM_SCOPE, key, data)
        return data
