"""BotBuilderStorage: a ``botbuilder.core.Storage`` over any turnstate storage.

::

    storage = BotBuilderStorage(RedisStorage(url), ttl={"msteams/conversations/": 7 * 86400})
    conversation_state = ConversationState(storage)
    user_state = UserState(storage)

Items are botbuilder's: dicts or objects (``StoreItem``, ``DialogState``...), serialized as botbuilder's
Cosmos storage does (jsonpickle's ``Pickler().flatten`` / ``Unpickler().restore``), so dialog stacks
round-trip. Restoring runs jsonpickle on stored data, as botbuilder does: the storage must be trusted.

``e_tag`` follows botbuilder: absent, None or ``"*"`` writes unconditionally; any other value writes only
if the stored item still has that ETag, else :class:`ETagConflictError` (a KeyError too, like botbuilder's
MemoryStorage raises); ``""`` is refused. ETags come from the turnstate storage, so they hold across
processes and hosts. After a write the new ETag is set on the caller's dict (``item["e_tag"]``) or object
(``item.e_tag``), and read returns it the same way.

``ttl``: seconds to live per key prefix (the longest matching prefix wins), renewed on every write.

``encryption``: a :class:`~turnstate.FieldEncryption` whose paths are ``<scope>.<JSON path in the item>``.
The scope is the botbuilder state class that owns the key, told by the key's shape:
``ConversationState`` (``{channel}/conversations/{id}``), ``UserState`` (``{channel}/users/{id}``),
``PrivateConversationState`` (``{channel}/conversations/{id}/users/{id}``). The JSON path is into the item
as jsonpickle flattens it: ``"ConversationState.DialogState"`` encrypts a conversation's dialog stack as one
envelope, ``"UserState.profile.email"`` one field of an object kept under the ``profile`` property.

Each key is stored as one turnstate value, the JSON object
``{"$botbuilder": 1, "document": <flattened item without e_tag>, "activity": [channel, conversation, id]}``
(``activity`` set while TurnStateMiddleware runs the turn: see :mod:`.turn`). Values written by
botbuilder's own storages are read as they are: a CosmosDbPartitionedStorage item ``{id, realId,
document}`` or a bare item as MemoryStorage kept it (see :mod:`.migration`).
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

from botbuilder.core import Storage as _BotStorage
from jsonpickle.pickler import Pickler
from jsonpickle.unpickler import Unpickler

from turnstate.crypto import FieldEncryption
from turnstate.errors import (
    CorruptDocumentError,
    DuplicateActivityError,
    InvalidItemError,
    PreconditionFailedError,
    StorageError,
    TurnStateError,
)
from turnstate.integrations.botbuilder.turn import BridgeTurn, current_turn
from turnstate.storage.base import ANY_ETAG, Storage, WriteItem

SCOPES = frozenset({"ConversationState", "UserState", "PrivateConversationState"})
"""The scope names an encrypted path can start with."""

LAYOUT = 1
"""The ``$botbuilder`` version of the stored layout."""


class ETagConflictError(PreconditionFailedError, KeyError):
    """A write's ``e_tag`` no longer matches the stored item: another turn or instance saved it first.

    Also a KeyError, the type botbuilder's MemoryStorage raises for the same case. ``keys``: the
    conflicting keys; ``written``: keys of the same call that were written (non-atomic storages).
    """

    def __init__(self, keys: Iterable[str], written: Mapping[str, str] | None = None) -> None:
        super().__init__(keys, written)
        shown = ", ".join(repr(k) for k in self.keys)
        self.args = (
            f"e_tag conflict on {shown}: the item was saved by another turn or instance since it was "
            "read; nothing of it was written. Read it again and re-apply the change (botbuilder does "
            "this when the activity is retried).",
        )

    def __str__(self) -> str:
        return str(self.args[0])


class MissingArgumentError(StorageError, ValueError):
    """read/write/delete was called with None. ``args[0]`` is botbuilder's own message for the case."""

    def __init__(self, message: str, fix: str) -> None:
        super().__init__(message)
        self.fix = fix

    def __str__(self) -> str:
        return f"{self.args[0]}: {self.fix}"


class BotBuilderConfigError(TurnStateError, TypeError, ValueError):
    """BotBuilderStorage was given a storage, ttl, encryption or argument it cannot use."""


def scope_of(key: str) -> str | None:
    """The botbuilder state class that owns ``key``, by its shape, or None for any other key."""
    parts = key.split("/", 2)
    if len(parts) < 3 or not parts[0] or not parts[2]:
        return None
    if parts[1] == "users":
        return "UserState"
    if parts[1] == "conversations":
        return "PrivateConversationState" if "/users/" in parts[2] else "ConversationState"
    return None


def _check_ttl(ttl: Mapping[str, float] | None) -> dict[str, float]:
    if ttl is None:
        return {}
    if not isinstance(ttl, Mapping):
        raise BotBuilderConfigError(
            f"ttl must map key prefixes to seconds, like {{'msteams/conversations/': 604800}}; "
            f"got {type(ttl).__name__}"
        )
    out: dict[str, float] = {}
    for prefix, seconds in ttl.items():
        if not isinstance(prefix, str):
            raise BotBuilderConfigError(f"ttl prefix {prefix!r} must be a str")
        if (
            isinstance(seconds, bool)
            or not isinstance(seconds, int | float)
            or not math.isfinite(seconds)
            or seconds <= 0
        ):
            raise BotBuilderConfigError(
                f"ttl for prefix {prefix!r} must be a positive number of seconds, got {seconds!r}"
            )
        out[prefix] = float(seconds)
    return out


def _e_tag_of(item: object) -> object:
    if isinstance(item, dict):
        return item.get("e_tag")
    return getattr(item, "e_tag", None)


def _set_e_tag(item: object, e_tag: str) -> None:
    if isinstance(item, dict):
        item["e_tag"] = e_tag
        return
    # an object that takes no attributes (slots, builtins) has nowhere to keep one
    with contextlib.suppress(AttributeError, TypeError):
        item.e_tag = e_tag  # type: ignore[attr-defined]


class BotBuilderStorage(_BotStorage):  # type: ignore[misc]
    """botbuilder's Storage interface over a turnstate :class:`~turnstate.Storage` (see the module doc)."""

    def __init__(
        self,
        storage: Storage,
        *,
        ttl: Mapping[str, float] | None = None,
        encryption: FieldEncryption | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(storage, Storage):
            raise BotBuilderConfigError(
                f"BotBuilderStorage wraps a turnstate storage (MemoryStorage, FileStorage, RedisStorage, "
                f"CosmosStorage...), got {type(storage).__name__}"
            )
        if encryption is not None:
            if not isinstance(encryption, FieldEncryption):
                raise BotBuilderConfigError(
                    f"encryption must be a turnstate FieldEncryption, got {type(encryption).__name__}"
                )
            unknown = sorted(encryption.scopes - SCOPES)
            if unknown:
                raise BotBuilderConfigError(
                    f"encrypted paths must start with one of {sorted(SCOPES)}, the botbuilder state that "
                    f"owns the key; got scope {unknown[0]!r} (for example 'ConversationState.DialogState')"
                )
        self.storage = storage
        self.encryption = encryption
        self.ttl = _check_ttl(ttl)

    def ttl_for(self, key: str) -> float | None:
        """Seconds to live for ``key``: the value of the longest ``ttl`` prefix it starts with."""
        best: str | None = None
        for prefix in self.ttl:
            if key.startswith(prefix) and (best is None or len(prefix) > len(best)):
                best = prefix
        return None if best is None else self.ttl[best]

    def encode(self, key: str, item: object, activity: list[str] | None = None) -> bytes:
        """The stored bytes for ``item`` under ``key``: flattened, ``e_tag`` dropped, fields encrypted."""
        document = Pickler().flatten(item)
        if isinstance(document, dict):
            document.pop("e_tag", None)
            scope = scope_of(key)
            if self.encryption is not None and scope is not None and scope in self.encryption.scopes:
                document = self.encryption.encrypt_data(scope, key, document)
        body = {"$botbuilder": LAYOUT, "document": document, "activity": activity}
        try:
            return json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
        except (TypeError, ValueError, UnicodeEncodeError) as exc:
            raise InvalidItemError(
                key,
                f"the item has no JSON form after jsonpickle flattening ({type(exc).__name__}: a NaN or "
                "infinite float, a lone surrogate, or a type jsonpickle cannot flatten); store plain data",
            ) from None

    def decode(self, key: str, value: bytes) -> tuple[Any, list[str] | None]:
        """The flattened item (fields decrypted) and the activity recorded with it, from stored bytes."""
        try:
            body = json.loads(value)
        except (ValueError, UnicodeDecodeError):
            raise CorruptDocumentError(key, "it is not UTF-8 JSON") from None
        if not isinstance(body, dict):
            raise CorruptDocumentError(key, f"expected a JSON object, found a {type(body).__name__}")
        activity: list[str] | None = None
        if "$botbuilder" in body:
            if body["$botbuilder"] != LAYOUT or "document" not in body:
                raise CorruptDocumentError(
                    key, f"unknown BotBuilderStorage layout {body['$botbuilder']!r} (this version reads 1)"
                )
            document = body["document"]
            recorded = body.get("activity")
            if isinstance(recorded, list) and all(isinstance(part, str) for part in recorded):
                activity = recorded
        elif isinstance(body.get("document"), dict) and isinstance(body.get("realId"), str):
            document = body["document"]  # a CosmosDbPartitionedStorage item
        else:
            document = {name: v for name, v in body.items() if name != "e_tag"}  # a bare MemoryStorage item
        if isinstance(document, dict):
            scope = scope_of(key)
            if self.encryption is not None and scope is not None and scope in self.encryption.scopes:
                self.encryption.decrypt_data(scope, key, document)
        return document, activity

    @staticmethod
    def restore(document: Any, e_tag: str) -> Any:
        """The botbuilder item (dict or object) for a flattened document, carrying ``e_tag``."""
        if isinstance(document, dict):
            document = {**document, "e_tag": e_tag}
        return Unpickler().restore(document)

    async def read(self, keys: Iterable[str]) -> dict[str, Any]:
        """Items by key; absent and expired keys are left out."""
        if keys is None:
            raise MissingArgumentError(
                "Keys are required when reading", "pass a list of storage keys, like [storage_key]"
            )
        if isinstance(keys, str):
            raise BotBuilderConfigError(f"read() takes a list of keys, got the single string {keys!r}")
        wanted = list(dict.fromkeys(keys))
        if not wanted:
            return {}
        stored = await self.storage.read(wanted)
        turn = current_turn()
        items: dict[str, Any] = {}
        for key in wanted:
            found = stored.get(key)
            if found is None:
                if turn is not None:
                    turn.read_absent.add(key)
                continue
            document, activity = self.decode(key, found.value)
            if turn is not None:
                turn.read_absent.discard(key)
                _check_not_done(turn, key, activity)
            items[key] = self.restore(document, found.etag)
        return items

    async def write(self, changes: Mapping[str, Any]) -> None:
        """Write items under botbuilder's e_tag rules; set each written item's new ``e_tag``."""
        if changes is None:
            raise MissingArgumentError(
                "Changes are required when writing", "pass a dict of storage key to item"
            )
        if not changes:
            return
        if not isinstance(changes, Mapping):
            raise BotBuilderConfigError(
                f"write() takes a dict of storage key to item, got {type(changes).__name__}"
            )
        turn = current_turn()
        activity = None if turn is None else turn.activity
        batch: dict[str, WriteItem] = {}
        for key, item in changes.items():
            e_tag = _e_tag_of(item)
            if_match: str | None
            if e_tag is None:
                # an item this turn read as absent is created only if it still is
                if_match = None if turn is not None and key in turn.read_absent else ANY_ETAG
            elif e_tag == "":
                raise InvalidItemError(
                    key, "its e_tag is the empty string; use None or '*' to write unconditionally"
                )
            elif isinstance(e_tag, str):
                if_match = e_tag
            else:
                raise InvalidItemError(key, f"its e_tag must be a str, got {type(e_tag).__name__}")
            batch[key] = WriteItem(self.encode(key, item, activity), if_match, self.ttl_for(key))
        try:
            etags = await self.storage.write(batch)
        except PreconditionFailedError as exc:
            self._written(changes, exc.written, turn)
            if turn is not None and turn.activity is not None:
                await self._raise_if_done(turn, exc)
            raise ETagConflictError(exc.keys, exc.written) from None
        self._written(changes, etags, turn)

    async def delete(self, keys: Iterable[str]) -> None:
        """Delete items; unknown keys are ignored."""
        if keys is None:
            raise MissingArgumentError(
                "Keys are required when deleting", "pass a list of storage keys, like [storage_key]"
            )
        if isinstance(keys, str):
            raise BotBuilderConfigError(f"delete() takes a list of keys, got the single string {keys!r}")
        await self.storage.delete(list(dict.fromkeys(keys)))

    @staticmethod
    def _written(changes: Mapping[str, Any], etags: Mapping[str, str], turn: BridgeTurn | None) -> None:
        for key, etag in etags.items():
            _set_e_tag(changes[key], etag)
            if turn is not None:
                turn.written.add(key)
                turn.read_absent.discard(key)

    async def _raise_if_done(self, turn: BridgeTurn, exc: PreconditionFailedError) -> None:
        """A conflict on an item that an earlier delivery of this activity wrote is a redelivery."""
        current = await self.storage.read(exc.keys)
        for key in exc.keys:
            found = current.get(key)
            if found is not None:
                _, activity = self.decode(key, found.value)
                _check_not_done(turn, key, activity)


def _check_not_done(turn: BridgeTurn, key: str, activity: list[str] | None) -> None:
    if turn.activity is not None and activity == turn.activity and key not in turn.written:
        raise DuplicateActivityError(turn.activity[2], key)
