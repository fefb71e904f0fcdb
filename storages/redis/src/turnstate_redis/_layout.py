"""The stored form of an item: one Redis string, ``ts1|<etag>|<value bytes>``.

``ts1`` names this layout, the ETag is ASCII without ``|``, and the value follows unchanged. A single GET
reads value and ETag together; one SET replaces both and, without PX, drops any earlier expiry.
"""

from __future__ import annotations

import os

from turnstate.errors import CorruptDocumentError
from turnstate.storage.base import StoredItem

MAGIC = b"ts1|"
HEADER_READ = 127
"""Bytes of the stored string the write script reads: enough for the header, never the whole value."""

NOT_OUR_LAYOUT_REASON = "the Redis string there is not in turnstate's 'ts1|<etag>|<value>' layout"
FOREIGN_TYPE_REASON = "the Redis key holds a non-string value, so something other than turnstate wrote it"


def where(name: bytes) -> str:
    """The Redis key of an item, as an on-call engineer would type it into redis-cli."""
    return f"Redis key {name.decode('utf-8', 'backslashreplace')!r}"


def new_etag() -> str:
    """A fresh ETag: 96 random bits, so writers in different processes never produce the same one."""
    return os.urandom(12).hex()


def pack(etag: str, value: bytes) -> bytes:
    return b"".join((MAGIC, etag.encode("ascii"), b"|", value))


def unpack(key: str, name: bytes, stored: bytes, expires_at: float | None = None) -> StoredItem:
    """Split a stored string into value and ETag; CorruptDocumentError naming ``key`` if it is not ours."""
    bar = stored.find(b"|", len(MAGIC), HEADER_READ + 1) if stored.startswith(MAGIC) else -1
    etag = stored[len(MAGIC) : bar] if bar > len(MAGIC) else b""
    if not etag.isascii() or not etag:
        raise CorruptDocumentError(key, NOT_OUR_LAYOUT_REASON, where(name))
    return StoredItem(stored[bar + 1 :], etag.decode("ascii"), expires_at)
