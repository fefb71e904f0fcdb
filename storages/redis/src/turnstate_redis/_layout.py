"""The stored form of an item and the server-side compare-and-set script.

Each item is one Redis string: ``ts1|<etag>|<value bytes>``. ``ts1`` names this layout, the ETag is
ASCII without ``|``, and the value follows unchanged. A single GET reads value and ETag together; one
SET replaces both and, without PX, drops any earlier expiry.
"""

from __future__ import annotations

import hashlib
import os

from turnstate.errors import CorruptDocumentError
from turnstate.storage.base import StoredItem

MAGIC = b"ts1|"
_HEADER_READ = 127
"""Bytes of the stored string the script reads: enough for the header, never the whole value."""

WRITTEN, PRECONDITION_FAILED, NOT_OUR_LAYOUT, FOREIGN_TYPE = 1, 0, -1, -2

# KEYS[1] the item. ARGV[1] mode: 'a' write whatever is stored, 'c' create only, 'm' the stored ETag
# must equal ARGV[2]. ARGV[3] the full stored string. ARGV[4] time to live in ms, or '' for none.
CAS_SCRIPT = f"""
local key = KEYS[1]
local head = redis.pcall('GETRANGE', key, 0, {_HEADER_READ})
if type(head) == 'table' then
  return {FOREIGN_TYPE}
end
local mode = ARGV[1]
if head == '' then
  if redis.call('EXISTS', key) == 1 then
    return {NOT_OUR_LAYOUT}
  end
  if mode == 'm' then
    return {PRECONDITION_FAILED}
  end
else
  if string.sub(head, 1, 4) ~= 'ts1|' then
    return {NOT_OUR_LAYOUT}
  end
  local bar = string.find(head, '|', 5, true)
  if not bar then
    return {NOT_OUR_LAYOUT}
  end
  if mode == 'c' or (mode == 'm' and string.sub(head, 5, bar - 1) ~= ARGV[2]) then
    return {PRECONDITION_FAILED}
  end
end
if ARGV[4] == '' then
  redis.call('SET', key, ARGV[3])
else
  redis.call('SET', key, ARGV[3], 'PX', ARGV[4])
end
return {WRITTEN}
""".encode()

CAS_SHA = hashlib.sha1(CAS_SCRIPT).hexdigest()


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
    bar = stored.find(b"|", len(MAGIC), _HEADER_READ + 1) if stored.startswith(MAGIC) else -1
    etag = stored[len(MAGIC) : bar] if bar > len(MAGIC) else b""
    if not etag.isascii() or not etag:
        raise CorruptDocumentError(key, NOT_OUR_LAYOUT_REASON, where(name))
    return StoredItem(stored[bar + 1 :], etag.decode("ascii"), expires_at)
