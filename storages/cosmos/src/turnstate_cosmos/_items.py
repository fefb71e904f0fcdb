"""The Cosmos DB item that stores one turnstate item, and the ETag handed out for it.

An item is ``{"id": item_id(key), "key": key, "value": <the value as UTF-8 text>, "expires_at": <Unix
seconds or null>, "ttl": <seconds or -1>}``; Cosmos DB adds ``_etag``. The ETag turnstate hands out is
Cosmos's, followed by ``~exp:`` and the expiry when the item has one, so a write conditional on an
expired version is refused without a request.
"""

from __future__ import annotations

import math
from typing import Any

from turnstate.errors import CorruptDocumentError, InvalidItemError, StorageError
from turnstate.storage.base import WriteItem
from turnstate_cosmos._keys import is_hashed, item_id

_ETAG_EXPIRY = "~exp:"
_MAX_TTL_SECONDS = 2**31 - 1


def item_body(key: str, item: WriteItem, now: float) -> dict[str, Any]:
    """The item to send for ``item``, written at ``now``; InvalidItemError naming ``key`` if it cannot be."""
    value = item.value
    if not isinstance(value, bytes | bytearray | memoryview):
        raise InvalidItemError(key, f"the value must be bytes, got {type(value).__name__}")
    try:
        text = bytes(value).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidItemError(
            key, f"Cosmos DB stores values as UTF-8 text and this one is not ({exc})"
        ) from exc
    if item.if_match is not None and not isinstance(item.if_match, str):
        raise InvalidItemError(key, f"if_match must be '*', None or an ETag str, got {item.if_match!r}")
    expires_at: float | None = None
    ttl = -1
    if item.ttl is not None:
        if not math.isfinite(item.ttl) or math.ceil(item.ttl) + 1 > _MAX_TTL_SECONDS:
            raise InvalidItemError(
                key, f"ttl {item.ttl!r} is too large for Cosmos DB; omit it to never expire"
            )
        expires_at = float(now + item.ttl)
        # Cosmos DB counts ttl from the item's _ts, the write time rounded down to the second: one second
        # more keeps it from deleting the item before expires_at.
        ttl = math.ceil(item.ttl) + 1
    return {"id": item_id(key), "key": key, "value": text, "expires_at": expires_at, "ttl": ttl}


def parse_item(key: str, row: dict[str, Any], where: str) -> tuple[bytes, float | None, str]:
    """(value, expires_at, Cosmos ETag) of one of our items; CorruptDocumentError naming ``key`` otherwise.

    ``where`` names the container in the error.
    """
    stored_key = row.get("key")
    if stored_key != key:
        reason = (
            "the item under this key's hashed id belongs to another key"
            if is_hashed(row.get("id", "")) and isinstance(stored_key, str)
            else "the item has no matching 'key' field, so turnstate did not write it"
        )
        raise CorruptDocumentError(key, reason, where)
    value, expires_at, etag = row.get("value"), row.get("expires_at"), row.get("_etag")
    if not isinstance(value, str):
        raise CorruptDocumentError(key, "the item's 'value' is not a string", where)
    if expires_at is not None and not _is_number(expires_at):
        raise CorruptDocumentError(key, "the item's 'expires_at' is not a number or null", where)
    if not isinstance(etag, str) or not etag:
        raise CorruptDocumentError(key, "the item has no '_etag'", where)
    try:
        raw = value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise CorruptDocumentError(key, "the item's 'value' is not valid Unicode", where) from exc
    return raw, None if expires_at is None else float(expires_at), etag


def listed_key(row: dict[str, Any], where: str) -> tuple[str, float | None]:
    """(key, expires_at) of a row of the key listing query; CorruptDocumentError if it is not ours."""
    key = row.get("key") if isinstance(row, dict) else None
    if not isinstance(key, str) or not key or item_id(key) != row.get("id"):
        raise CorruptDocumentError(
            repr(key), f"item {row.get('id')!r} holds a key that does not encode to its id", where
        )
    expires_at = row.get("expires_at")
    if expires_at is not None and not _is_number(expires_at):
        raise CorruptDocumentError(key, "expires_at is not a number or null", where)
    return key, expires_at


def saved_etag(key: str, saved: object, where: str) -> str:
    """The Cosmos ETag of the item a write returned; StorageError if there is none."""
    etag = saved.get("_etag") if isinstance(saved, dict) else None
    if not isinstance(etag, str) or not etag:
        raise StorageError(f"Cosmos DB ({where}) wrote {key!r} but returned no ETag")
    return etag


def live(expires_at: float | None, now: float) -> bool:
    """Not expired at ``now``."""
    return expires_at is None or expires_at > now


def public_etag(etag: str, expires_at: float | None) -> str:
    """The ETag turnstate hands out: Cosmos's, plus the item's expiry so a stale one is refused locally."""
    return etag if expires_at is None else f"{etag}{_ETAG_EXPIRY}{expires_at!r}"


def split_etag(public: str) -> tuple[str, float | None]:
    """Cosmos's ETag and the expiry inside a public ETag (None when it carries none)."""
    etag, sep, expiry = public.rpartition(_ETAG_EXPIRY)
    if not sep:
        return public, None
    try:
        return etag, float(expiry)
    except ValueError:
        return public, None


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
