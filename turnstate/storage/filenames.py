"""File names for storage keys: reversible, injective even on case-insensitive file systems, and safe.

Lowercase letters, digits, ``-``, ``_`` and ``.`` stand for themselves (except a leading ``.``), an
uppercase letter ``A`` becomes ``^a``, and every other character becomes ``%`` plus two lowercase hex
digits per UTF-8 byte. No name contains ``/`` or NUL or is ``.`` or ``..``, so no key can leave its
directory. A name longer than :data:`MAX_NAME_LENGTH` is replaced by ``@`` and the key's SHA-256; the
storage then keeps the real key inside the file and checks it on read.
"""

from __future__ import annotations

import hashlib

from turnstate.errors import InvalidKeyError

MAX_NAME_LENGTH = 200
"""Encoded names longer than this are replaced by ``"@" + sha256(key)``; the key stays in the file."""

HASHED_PREFIX = "@"
_HEX = frozenset("0123456789abcdef")
_VERBATIM = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_.")
# Every ASCII character's token: lowercase letters, digits, "-", "_" and "." stand for themselves,
# "A" becomes "^a", everything else "%" and two lowercase hex digits per UTF-8 byte. The tokens form a
# prefix-free code over a lowercase alphabet, so the encoding is injective even after case folding.
_ASCII_TOKENS = {
    c: (chr(c) if chr(c) in _VERBATIM else "^" + chr(c).lower() if chr(c).isupper() else f"%{c:02x}")
    for c in range(128)
}


def _token(char: str) -> str:
    if char.isascii():
        return _ASCII_TOKENS[ord(char)]
    return "".join(f"%{b:02x}" for b in char.encode())


def encode_key(key: str) -> str:
    """Return the file name for ``key``: reversible, injective under case folding, never "." or "..".

    Names use only ``[a-z0-9._%^-]`` and never start with "."; a name longer than
    :data:`MAX_NAME_LENGTH` becomes ``"@"`` followed by the key's SHA-256 in hex (see :func:`decode_key`).
    """
    try:
        raw = key.encode()
    except UnicodeEncodeError as exc:
        raise InvalidKeyError(key, "it is not valid Unicode text (it holds a lone surrogate)") from exc
    name = key.translate(_ASCII_TOKENS) if key.isascii() else "".join(map(_token, key))
    if name.startswith("."):
        name = "%2e" + name[1:]
    if len(name) > MAX_NAME_LENGTH:
        return HASHED_PREFIX + hashlib.sha256(raw).hexdigest()
    return name


def decode_key(name: str) -> str | None:
    """Return the key whose file is ``name``, or None for a hashed name (the key is inside the file).

    Raises InvalidKeyError for a name that :func:`encode_key` never produces.
    """
    if name.startswith(HASHED_PREFIX) and len(name) == 65 and _HEX.issuperset(name[1:]):
        return None
    out = bytearray()
    i = 0
    try:
        while i < len(name):
            char = name[i]
            if char == "%" and _HEX.issuperset(name[i + 1 : i + 3]) and len(name) >= i + 3:
                out.append(int(name[i + 1 : i + 3], 16))
                i += 3
            elif char == "^" and "a" <= name[i + 1 : i + 2] <= "z":
                out += name[i + 1].upper().encode()
                i += 2
            elif char in _VERBATIM:
                out += char.encode()
                i += 1
            else:
                raise ValueError(f"unexpected {char!r} at offset {i}")
        key = out.decode()
    except ValueError as exc:
        raise InvalidKeyError(name, f"not a file name that encode_key produces ({exc})") from exc
    if not key or encode_key(key) != name:
        raise InvalidKeyError(name, "not a file name that encode_key produces (not canonical)")
    return key
