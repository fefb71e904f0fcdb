"""Storage keys as Cosmos DB item ids: reversible escaping, and a hash for keys too long to escape.

Cosmos ids are at most 255 characters and cannot contain ``/``, ``\\``, ``?`` or ``#``. Each of those,
``%`` itself and the control characters (U+0000-U+001F, U+007F, which REST paths and some gateways
mangle) become ``%XX`` (two upper-case hex digits); every other character stays as it is, except a space
at the very end, which becomes ``%20`` (the SDK refuses ids ending in a space or a newline, and a newline
is already escaped), and the ids ``.`` and ``..``, which become ``%2E`` and ``%2E%2E`` (as path segments of
the REST API's URLs they would be read as "this" and "the parent" collection). Decoding reverses it, so
two different keys never share an id.

A key whose escaped form is longer than 255 characters is stored under ``%h`` + the SHA-256 of its
UTF-8 bytes (66 characters). Escaping never produces ``%h`` (``h`` is not a hex digit), so a hashed id
never equals an escaped one; the item keeps the real key, and reads check it.
"""

from __future__ import annotations

import hashlib

from turnstate.errors import InvalidKeyError

MAX_ID_LENGTH = 255
HASHED_PREFIX = "%h"

_ESCAPED = frozenset("%/\\?#\x7f" + "".join(chr(c) for c in range(0x20)))
_HEX = frozenset("0123456789ABCDEF")
_TRAILING_SPACE = "%20"
_DOTS = {".": "%2E", "..": "%2E%2E"}
_UNDOTTED = {escaped: dots for dots, escaped in _DOTS.items()}


def item_id(key: str) -> str:
    """The Cosmos id that stores ``key``."""
    try:
        raw = key.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidKeyError(
            key, f"Cosmos DB stores keys as UTF-8 and this one cannot be encoded ({exc})"
        ) from exc
    escaped = "".join(f"%{ord(ch):02X}" if ch in _ESCAPED else ch for ch in key)
    if escaped.endswith(" "):
        escaped = escaped[:-1] + _TRAILING_SPACE
    elif escaped in _DOTS:
        escaped = _DOTS[escaped]
    if len(escaped) <= MAX_ID_LENGTH:
        return escaped
    return HASHED_PREFIX + hashlib.sha256(raw).hexdigest()


def is_hashed(item_id_: str) -> bool:
    """True when the id is a hash (the key must be taken from the item)."""
    return item_id_.startswith(HASHED_PREFIX)


def key_of(item_id_: str) -> str | None:
    """The key an escaped id stands for; None for a hashed id. ValueError if no key encodes to it."""
    if is_hashed(item_id_):
        return None
    if item_id_ in _UNDOTTED:
        return _UNDOTTED[item_id_]
    if item_id_.endswith(" "):
        raise ValueError(f"{item_id_!r} is not an escaped key: it ends with an unescaped space")
    out: list[str] = []
    i = 0
    while i < len(item_id_):
        ch = item_id_[i]
        if item_id_.startswith(_TRAILING_SPACE, i) and i + len(_TRAILING_SPACE) == len(item_id_):
            out.append(" ")
            break
        if ch == "%":
            digits = item_id_[i + 1 : i + 3]
            if len(digits) != 2 or not set(digits) <= _HEX or chr(int(digits, 16)) not in _ESCAPED:
                raise ValueError(f"{item_id_!r} is not an escaped key: bad escape at {i}")
            out.append(chr(int(digits, 16)))
            i += 3
            continue
        if ch in _ESCAPED:
            raise ValueError(f"{item_id_!r} is not an escaped key: unescaped {ch!r} at {i}")
        out.append(ch)
        i += 1
    return "".join(out)
