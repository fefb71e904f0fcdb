"""The envelope an encrypted field is stored as: AES-256-GCM bound to its document and field.

An envelope is the JSON object::

    {"$enc": "v1.<key id>.<base64(nonce || ciphertext || tag)>"}

The plaintext is the JSON encoding of the value, so any storable value (str, number, list, object, null)
round-trips. Base64 is the standard, padded alphabet (RFC 4648 section 4), whose '+', '/' and '=' need no
escaping in JSON. The nonce is 12 fresh random bytes per encryption; the tag is 16 bytes. The associated data
is the JSON array ``["v1", key id, storage key, scope, [path segments...]]``, so a ciphertext copied to
another document, scope or field, or relabelled with another key id, fails to decrypt.

Random 96-bit nonces keep collisions negligible for about 2**32 encryptions per key (NIST SP 800-38D);
rotate the primary key well before that many encrypted-field writes.
"""

from __future__ import annotations

import binascii
import os
import re
import struct
from typing import Any

import msgspec
from cryptography.exceptions import InvalidTag

from turnstate.errors import DecryptionError
from turnstate.keyring import KEY_ID, Cipher, KeyRing
from turnstate.paths import join

ENVELOPE_MARKER = "$enc"
"""The single member of an envelope object."""

ENVELOPE_VERSION = "v1"
NONCE_SIZE = 12
TAG_SIZE = 16

_MIN_RAW = NONCE_SIZE + TAG_SIZE + 1
_AD_CACHE_SIZE = 256
_VERSION_LIKE = re.compile(r"v[0-9]{1,4}\Z")

_a2b = binascii.a2b_base64
_b2a = binascii.b2a_base64
_encode = msgspec.json.Encoder().encode


def is_envelope(value: object) -> bool:
    """True if ``value`` has the shape of an encrypted-field envelope (it is not checked further)."""
    return type(value) is dict and len(value) == 1 and type(value.get(ENVELOPE_MARKER)) is str


def field_label(scope: str, path: tuple[str, ...]) -> str:
    """The state path of a field, as error messages show it."""
    return join(scope, *path)


# -- nonces --------------------------------------------------------------------------------------------

_NONCES_PER_DRAW = 341  # 4092 bytes: one os.urandom call of about a page

_nonces: list[bytes] = []
"""Nonces cut from one os.urandom call, each popped once (list.pop is atomic, so threads never share one).
Emptied in a forked child, so a parent and its child never share nonces either."""

os.register_at_fork(after_in_child=_nonces.clear)

_cut_nonces = struct.Struct(f"{NONCE_SIZE}s" * _NONCES_PER_DRAW).unpack


def _more_nonces() -> bytes:
    more: tuple[bytes, ...] = _cut_nonces(os.urandom(NONCE_SIZE * _NONCES_PER_DRAW))
    _nonces.extend(more[1:])
    return more[0]


# -- sealing and opening -------------------------------------------------------------------------------


class Envelopes:
    """Makes envelopes under a ring's primary key and opens envelopes under any key of the ring.

    The associated data of the documents and paths used last is kept encoded, since a turn opens and seals
    the same documents' fields.
    """

    __slots__ = ("_cipher", "_prefixes", "_suffixes", "head", "primary", "ring")

    def __init__(self, ring: KeyRing) -> None:
        self.ring = ring
        self.primary = ring.primary
        self.head = f"{ENVELOPE_VERSION}.{ring.primary}."
        """How the text of every envelope under the primary key begins."""
        cipher = ring.cipher(ring.primary)
        assert cipher is not None  # a ring always holds its primary
        self._cipher = cipher
        self._prefixes: dict[tuple[str, str, str], bytes] = {}
        self._suffixes: dict[tuple[str, ...], bytes] = {}

    def _prefix(self, kid: str, storage_key: str, scope: str) -> bytes:
        if len(self._prefixes) >= _AD_CACHE_SIZE:
            self._prefixes.clear()
        head = (kid, storage_key, scope)
        prefix = self._prefixes[head] = _encode((ENVELOPE_VERSION, *head))[:-1] + b","
        return prefix

    def _suffix(self, path: tuple[str, ...]) -> bytes:
        if len(self._suffixes) >= _AD_CACHE_SIZE:
            self._suffixes.clear()
        suffix = self._suffixes[path] = _encode(path) + b"]"
        return suffix

    def seal(self, plaintext: bytes, storage_key: str, scope: str, path: tuple[str, ...]) -> dict[str, Any]:
        """A new envelope holding ``plaintext`` for this field, under the primary key, with a fresh nonce."""
        try:
            nonce = _nonces.pop()
        except IndexError:
            nonce = _more_nonces()
        kid = self.primary
        prefix = self._prefixes.get((kid, storage_key, scope)) or self._prefix(kid, storage_key, scope)
        ad = prefix + (self._suffixes.get(path) or self._suffix(path))
        sealed = self._cipher.encrypt(nonce, plaintext, ad)
        return {ENVELOPE_MARKER: self.head + _b2a(nonce + sealed, newline=False).decode()}

    def open(self, envelope: dict[str, Any], storage_key: str, scope: str, path: tuple[str, ...]) -> bytes:
        """The plaintext of an object holding the envelope marker at this field; DecryptionError says
        precisely why not (not exactly an envelope, unknown key id, tampered, moved, ...)."""
        text = envelope[ENVELOPE_MARKER]
        if text.__class__ is not str or len(envelope) != 1:
            raise _error(
                storage_key, scope, path, f"malformed envelope: expected exactly {{{ENVELOPE_MARKER!r}: str}}"
            )
        head = self.head
        cipher: Cipher | None
        if text.startswith(head):
            kid = self.primary
            cipher = self._cipher
            body = text[len(head) :]
        else:
            kid, body = self._other_key(text, storage_key, scope, path)
            cipher = self.ring.cipher(kid)
            if cipher is None:
                raise _error(
                    storage_key,
                    scope,
                    path,
                    f"it was encrypted under key id {kid!r}, which the key ring does not hold (it holds "
                    f"{', '.join(map(repr, self.ring.ids))}); add that key, decrypt-only, to the ring",
                )
        try:
            raw = _a2b(body, strict_mode=True)
        except ValueError as exc:
            raise _error(storage_key, scope, path, "malformed envelope: bad base64") from exc
        if len(raw) < _MIN_RAW:
            raise _error(storage_key, scope, path, "malformed envelope: too short")
        prefix = self._prefixes.get((kid, storage_key, scope)) or self._prefix(kid, storage_key, scope)
        ad = prefix + (self._suffixes.get(path) or self._suffix(path))
        try:
            return cipher.decrypt(raw[:NONCE_SIZE], raw[NONCE_SIZE:], ad)
        except InvalidTag as exc:
            raise _error(
                storage_key,
                scope,
                path,
                "authentication failed: the value was altered, copied from another document or field, or "
                f"encrypted with a different key that has the same id {kid!r}",
            ) from exc

    @staticmethod
    def _other_key(text: str, storage_key: str, scope: str, path: tuple[str, ...]) -> tuple[str, str]:
        """(key id, base64 body) of an envelope text not under the primary key, checked for its form."""
        parts = text.split(".")
        if len(parts) == 3 and parts[0] == ENVELOPE_VERSION:
            if not KEY_ID.match(parts[1]):
                raise _error(storage_key, scope, path, "malformed envelope: invalid key id")
            return parts[1], parts[2]
        if len(parts) == 3 and _VERSION_LIKE.match(parts[0]):
            reason = (
                f"envelope format {parts[0]!r} is not supported by this release "
                f"(it reads {ENVELOPE_VERSION!r})"
            )
        else:
            reason = f"malformed envelope: expected '{ENVELOPE_VERSION}.<key id>.<base64>'"
        raise _error(storage_key, scope, path, reason)


def _error(storage_key: str, scope: str, path: tuple[str, ...], reason: str) -> DecryptionError:
    return DecryptionError(storage_key, field_label(scope, path), reason)
