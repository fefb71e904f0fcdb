"""The server-side scripts (read, and compare-and-set), their arguments and their result codes.

A read is one EVALSHA that answers each key's stored string and its PTTL together (nil when absent): one
command for all the keys on a single server, one per key on a cluster, whose keys live in different
slots. A write is one EVALSHA per key that checks the write's precondition against the stored ETag and
replaces the stored string (with or without an expiry) in one atomic step; it reads only the header of
what is stored, never the whole value.
"""

from __future__ import annotations

import hashlib
import math

from turnstate.errors import InvalidItemError
from turnstate.storage.base import ANY_ETAG, WriteItem
from turnstate_redis._layout import HEADER_READ, MAGIC, pack

WRITTEN, PRECONDITION_FAILED, NOT_OUR_LAYOUT, FOREIGN_TYPE = 1, 0, -1, -2

_MAX_TTL_MS = 2**62

# KEYS[1] the item. ARGV[1] mode: 'a' write whatever is stored, 'c' create only, 'm' the stored ETag
# must equal ARGV[2]. ARGV[3] the full stored string. ARGV[4] time to live in ms, or '' for none.
CAS_SCRIPT = f"""
local key = KEYS[1]
local head = redis.pcall('GETRANGE', key, 0, {HEADER_READ})
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
  if string.sub(head, 1, {len(MAGIC)}) ~= '{MAGIC.decode()}' then
    return {NOT_OUR_LAYOUT}
  end
  local bar = string.find(head, '|', {len(MAGIC) + 1}, true)
  if not bar then
    return {NOT_OUR_LAYOUT}
  end
  if mode == 'c' or (mode == 'm' and string.sub(head, {len(MAGIC) + 1}, bar - 1) ~= ARGV[2]) then
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

# KEYS the items. Answers two entries per key: nil and nil when absent, the value and its PTTL when
# stored, FOREIGN_TYPE and nil for a key holding another type.
READ_SCRIPT = f"""
local found = {{}}
for index, key in ipairs(KEYS) do
  local value = redis.pcall('GET', key)
  if type(value) == 'table' then
    found[2 * index - 1], found[2 * index] = {FOREIGN_TYPE}, false
  elseif value then
    found[2 * index - 1], found[2 * index] = value, redis.call('PTTL', key)
  else
    found[2 * index - 1], found[2 * index] = false, false
  end
end
return found
""".encode()

READ_SHA = hashlib.sha1(READ_SCRIPT).hexdigest()


def script_args(key: str, item: WriteItem, etag: str) -> tuple[bytes | str, ...]:
    """The script's ARGV to write ``item`` under ``etag``; InvalidItemError naming ``key`` if it cannot."""
    value = item.value
    if not isinstance(value, bytes | bytearray | memoryview):
        raise InvalidItemError(key, f"the value must be bytes, got {type(value).__name__}")
    ttl = b""
    if item.ttl is not None:
        if not math.isfinite(item.ttl) or item.ttl * 1000 >= _MAX_TTL_MS:
            raise InvalidItemError(key, f"ttl {item.ttl!r} is too large for Redis; omit it to never expire")
        ttl = str(max(1, math.ceil(item.ttl * 1000))).encode()
    if item.if_match == ANY_ETAG:
        mode, expected = "a", ""
    elif item.if_match is None:
        mode, expected = "c", ""
    elif isinstance(item.if_match, str):
        mode, expected = "m", item.if_match
    else:
        raise InvalidItemError(key, f"if_match must be '*', None or an ETag str, got {item.if_match!r}")
    return mode, expected.encode("utf-8", "surrogateescape"), pack(etag, value), ttl
