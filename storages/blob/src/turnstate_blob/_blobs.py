"""The block blob that stores one turnstate item, and the ETag handed out for it.

A blob holds the value as its content and carries ``turnstate=1`` metadata, plus ``turnstate_expires_at``
when the item expires. A blob under a hashed name (see ``_names``) starts with the key itself (UTF-8), whose
length is in ``turnstate_key_bytes``, so a hash collision is detected on read. The ETag turnstate hands
out is the blob's, followed by ``~exp:`` and the expiry when there is one, so a write conditional on an
expired version is refused without a request.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from turnstate.errors import CorruptDocumentError, InvalidItemError
from turnstate.storage.base import WriteItem
from turnstate_blob._names import blob_name, is_hashed

LAYOUT_FIELD = "turnstate"
"""Metadata field that marks a blob as written by BlobStorage; its value is the layout version."""
LAYOUT = "1"
EXPIRES_FIELD = "turnstate_expires_at"
"""Metadata field holding the blob's expiry (Unix seconds, ``repr`` of a float); absent: never expires."""
KEY_BYTES_FIELD = "turnstate_key_bytes"
"""Metadata field of a hashed name: the length of the real key (UTF-8) that starts the blob's content."""

_ETAG_EXPIRY = "~exp:"


class Blob:
    """One of our blobs as read: content, ETag and metadata."""

    __slots__ = ("content", "etag", "metadata")

    def __init__(self, content: bytes, etag: str, metadata: Mapping[str, str]) -> None:
        self.content = content
        self.etag = etag
        self.metadata = metadata


def blob_of(key: str, item: WriteItem, now: float) -> tuple[bytes, dict[str, str]]:
    """The content and metadata of the blob that stores ``item``, written at ``now``."""
    value = item.value
    if not isinstance(value, bytes | bytearray | memoryview):
        raise InvalidItemError(key, f"the value must be bytes, got {type(value).__name__}")
    if item.if_match is not None and not isinstance(item.if_match, str):
        raise InvalidItemError(key, f"if_match must be '*', None or an ETag str, got {item.if_match!r}")
    metadata = {LAYOUT_FIELD: LAYOUT}
    if item.ttl is not None:
        expires_at = float(now + item.ttl)
        if not math.isfinite(expires_at):
            raise InvalidItemError(key, f"ttl {item.ttl!r} is not a finite number; omit it to never expire")
        metadata[EXPIRES_FIELD] = repr(expires_at)
    content = bytes(value)
    if is_hashed(blob_name(key)):
        raw_key = key.encode("utf-8")
        metadata[KEY_BYTES_FIELD] = str(len(raw_key))
        content = raw_key + content
    return content, metadata


def is_ours(metadata: Mapping[str, str]) -> bool:
    """The metadata marks a blob BlobStorage wrote."""
    return metadata.get(LAYOUT_FIELD) == LAYOUT


def stored_value(key: str, name: str, blob: Blob, where: str) -> tuple[bytes, float | None]:
    """(value, expires_at) of one of our blobs; CorruptDocumentError for anything else."""
    metadata = blob.metadata
    where = f"{where}, blob {name!r}"
    if not is_ours(metadata):
        raise CorruptDocumentError(
            key,
            f"the blob has no '{LAYOUT_FIELD}={LAYOUT}' metadata, so turnstate did not write it",
            where,
        )
    expires_at = expiry(key, metadata, where)
    if not is_hashed(name):
        return blob.content, expires_at
    length = key_length(key, metadata, where)
    stored_key = blob.content[:length]
    if stored_key != key.encode("utf-8"):
        raise CorruptDocumentError(key, "the blob under this key's hashed name belongs to another key", where)
    return blob.content[length:], expires_at


def hashed_key(name: str, raw: bytes, where: str) -> str:
    """The key that starts the content (``raw``) of the blob under the hashed ``name``."""
    try:
        key = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise CorruptDocumentError(repr(name), "the key it holds is not UTF-8", where) from None
    if blob_name(key) != name:
        raise CorruptDocumentError(key, f"blob {name!r} holds a key that does not hash to it", where)
    return key


def expiry(key: str, metadata: Mapping[str, str], where: str) -> float | None:
    """The expiry in the metadata, None when there is none; CorruptDocumentError if it is no number."""
    text = metadata.get(EXPIRES_FIELD)
    if text is None:
        return None
    try:
        expires_at = float(text)
    except ValueError:
        raise CorruptDocumentError(key, f"its '{EXPIRES_FIELD}' metadata is not a number", where) from None
    return expires_at


def key_length(key: str, metadata: Mapping[str, str], where: str) -> int:
    """The length of the key that starts a hashed name's content; CorruptDocumentError if not given."""
    text = metadata.get(KEY_BYTES_FIELD, "")
    if not text.isdigit() or int(text) == 0:
        raise CorruptDocumentError(
            key, f"the blob has a hashed name but no valid '{KEY_BYTES_FIELD}' metadata", where
        )
    return int(text)


def live(expires_at: float | None, now: float) -> bool:
    """An item with this expiry has not expired at ``now``."""
    return expires_at is None or expires_at > now


def public_etag(etag: str, expires_at: float | None) -> str:
    """The ETag turnstate hands out: the blob's, plus its expiry so a stale one is refused locally."""
    return etag if expires_at is None else f"{etag}{_ETAG_EXPIRY}{expires_at!r}"


def split_etag(public: str) -> tuple[str, float | None]:
    """The blob's ETag and the expiry in a :func:`public_etag`; one that is not ours is kept whole."""
    etag, sep, expiry_text = public.rpartition(_ETAG_EXPIRY)
    if not sep:
        return public, None
    try:
        return etag, float(expiry_text)
    except ValueError:
        return public, None
