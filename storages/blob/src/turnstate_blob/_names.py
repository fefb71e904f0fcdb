"""Storage keys as blob names: a reversible escaping, and a hash for keys too long to escape.

Blob names are at most 1,024 characters of at most 254 ``/``-separated segments, are case-sensitive, and
pass through URLs and through tools that mangle some of them: a name ending in ``.`` or ``/`` is trimmed
or read as a directory, ``\\`` is turned into ``/``, ``.`` and ``..`` segments are resolved as relative
paths, control characters are refused, and Unicode text may be normalised. So every character outside
``A-Z a-z 0-9 - _ . ~ : @ = , ! ( )`` and ``/`` becomes ``%XX`` for each byte of its UTF-8 form (upper-case
hex; ``%`` itself included), and additionally:

* a ``.`` that ends a segment (before a ``/`` or at the end) becomes ``%2E``, so no segment is ``.`` or
  ``..`` and the name never ends in a dot;
* a ``/`` that would start the name, follow another ``/`` or end the name becomes ``%2F``, so no segment is
  empty and the name never ends in a slash.

Decoding reverses it, so two different keys never share a name. A key whose escaped form is longer than
1,024 characters or has more than 254 segments is stored under ``%h`` + the SHA-256 of its UTF-8 bytes
(66 characters). Escaping never produces ``%h`` (``h`` is not a hex digit), so a hashed name never equals
an escaped one; such a blob keeps the real key, and reads check it.
"""

from __future__ import annotations

import hashlib
import string

from turnstate.errors import InvalidKeyError

MAX_NAME_LENGTH = 1024
MAX_SEGMENTS = 254
HASHED_PREFIX = "%h"

_SAFE = frozenset(string.ascii_letters + string.digits + "-_.~:@=,!()")
_HEX = frozenset("0123456789ABCDEF")


def _escape_char(ch: str) -> str:
    return "".join(f"%{byte:02X}" for byte in ch.encode("utf-8"))


def _escaped(key: str) -> str:
    """The escaped form of ``key`` (any length)."""
    out: list[str] = []
    last = len(key) - 1
    for i, ch in enumerate(key):
        if ch == "/":
            edge = i == 0 or i == last or key[i - 1] == "/"
            out.append("%2F" if edge else "/")
        elif ch == ".":
            out.append("%2E" if i == last or key[i + 1] == "/" else ".")
        elif ch in _SAFE:
            out.append(ch)
        else:
            out.append(_escape_char(ch))
    return "".join(out)


def _utf8(key: str) -> bytes:
    try:
        return key.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidKeyError(
            key, f"blob names are UTF-8 and this key cannot be encoded (a lone surrogate at {exc.start})"
        ) from None


def blob_name(key: str) -> str:
    """The blob name that stores ``key``."""
    raw = _utf8(key)
    escaped = _escaped(key)
    if len(escaped) <= MAX_NAME_LENGTH and escaped.count("/") < MAX_SEGMENTS:
        return escaped
    return HASHED_PREFIX + hashlib.sha256(raw).hexdigest()


def is_hashed(name: str) -> bool:
    """True when the name is a hash (the key must be taken from the blob)."""
    return name.startswith(HASHED_PREFIX)


def key_of(name: str) -> str | None:
    """The key an escaped name stands for; None for a hashed name. ValueError if no key escapes to it."""
    if is_hashed(name):
        return None
    data = bytearray()
    i = 0
    while i < len(name):
        ch = name[i]
        if ch == "%":
            digits = name[i + 1 : i + 3]
            if len(digits) != 2 or not set(digits) <= _HEX:
                raise ValueError(f"{name!r} is not an escaped key: bad escape at {i}")
            data.append(int(digits, 16))
            i += 3
        else:
            data += ch.encode("utf-8")
            i += 1
    try:
        key = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{name!r} is not an escaped key: its escapes are not UTF-8") from exc
    # Only the canonical escaping of a key decodes to it: "%41" or an unescaped trailing dot do not.
    if not key or blob_name(key) != name:
        raise ValueError(f"{name!r} is not an escaped key: it is not the escaping of {key!r}")
    return key


def name_prefix(key_prefix: str) -> str:
    """A prefix of every escaped name whose key starts with ``key_prefix`` (for server-side listing).

    The escaping of a character depends only on the character after it (and a leading ``/`` on its
    position), so the prefix without its trailing dots and slashes escapes the same in every longer key.
    """
    _utf8(key_prefix)
    stable = key_prefix.rstrip("./")
    return _escaped(stable)
