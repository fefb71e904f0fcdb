"""Field-level encryption: AES-256-GCM envelopes bound to their document and field.

A field declared encrypted is stored, in place of its value, as the JSON object::

    {"$enc": "v1.<key id>.<base64(nonce || ciphertext || tag)>"}

The plaintext is the JSON encoding of the value, so any storable value (str, number, list, object, null)
round-trips. Base64 is the standard, padded alphabet (RFC 4648 section 4), whose '+', '/' and '=' need no
escaping in JSON. The nonce is 12 fresh random bytes per encryption; the tag is 16 bytes. The associated data
is the JSON array ``["v1", key id, storage key, scope, [path segments...]]``, so a ciphertext copied to
another document, scope or field, or relabelled with another key id, fails to decrypt.

Declared paths are state paths with the scope first (``"user.email"``, ``"conversation.incident.owner"``).
A ``*`` segment matches exactly one field name at that level; a path that names an object encrypts the whole
object as one envelope (that is how to encrypt a subtree; ``**`` is not supported, and a field literally
named ``*`` cannot be declared). Segments address object members only, never list items.

A declared path also guards the levels it goes through. Where it expects an object with fields (``a.b``
for ``a.b.*``, ``a`` and ``a.x`` for ``a.*.c``) and finds any other value but null (a string, number,
bool, list, or an object with a ``"$enc"`` member), that value is encrypted whole as one envelope for its
own path, so nothing under a declared path is ever stored in plaintext, whatever its shape. At load an
envelope there decrypts to that value, and plaintext there is refused like plaintext at a declared field.

Everything fails closed: a bad tag, an unknown key id, a malformed envelope, or plaintext where a field is
declared encrypted raises an :class:`~turnstate.errors.EncryptionError` naming the storage key and path.
No message or repr carries a field value or key bytes.

Random 96-bit nonces keep collisions negligible for about 2**32 encryptions per key (NIST SP 800-38D);
rotate the primary key well before that many encrypted-field writes.
"""

from __future__ import annotations

import binascii
import os
import re
import struct
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import msgspec
from cryptography.exceptions import InvalidTag

from turnstate.errors import DecryptionError, EncryptionError, KeyRingError, PlaintextFieldError
from turnstate.keyring import (
    KEY_ID,
    KeyRing,
)
from turnstate.paths import join, parse

ENVELOPE_MARKER = "$enc"
"""The single member of an envelope object."""

ENVELOPE_VERSION = "v1"
NONCE_SIZE = 12
TAG_SIZE = 16
REDACTED = "<encrypted>"

_MIN_RAW = NONCE_SIZE + TAG_SIZE + 1

_AD_CACHE_SIZE = 256
_a2b = binascii.a2b_base64
_b2a = binascii.b2a_base64
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode


Sealed = dict[tuple[str, ...], tuple[bytes, dict[str, Any], Any]]
"""Envelopes as loaded or last made, by field path, with the plaintext they hold and the value that was
decoded from or encrypted into them (see FieldEncryption.encrypt_data)."""


def is_envelope(value: object) -> bool:
    """True if ``value`` has the shape of an encrypted-field envelope (it is not checked further)."""
    return type(value) is dict and len(value) == 1 and type(value.get(ENVELOPE_MARKER)) is str


class _Node:
    """One level of the compiled path patterns: literal children, a ``*`` child, or the end of a pattern."""

    __slots__ = ("children", "star", "terminal")

    def __init__(self) -> None:
        self.children: dict[str, _Node] = {}
        self.star: _Node | None = None
        self.terminal = False


def _insert(node: _Node, segments: Sequence[str]) -> None:
    for segment in segments:
        if node.terminal:
            return  # an ancestor is encrypted as a whole already
        if segment == "*":
            if node.star is None:
                node.star = _Node()
            node = node.star
        else:
            node = node.children.setdefault(segment, _Node())
    node.terminal = True
    node.children = {}
    node.star = None


def _merge(a: _Node | None, b: _Node | None) -> _Node | None:
    if a is None or b is None:
        return a or b
    merged = _Node()
    if a.terminal or b.terminal:
        merged.terminal = True
        return merged
    for segment in a.children.keys() | b.children.keys():
        child = _merge(a.children.get(segment), b.children.get(segment))
        if child is not None:
            merged.children[segment] = child
    merged.star = _merge(a.star, b.star)
    return merged


def _normalize(node: _Node) -> None:
    """Fold the ``*`` child into each literal child, so one lookup per field name finds every pattern."""
    if node.star is not None:
        node.children = {seg: _merge(child, node.star) or child for seg, child in node.children.items()}
    for child in node.children.values():
        _normalize(child)
    if node.star is not None:
        _normalize(node.star)


def _compile(patterns: Iterable[str]) -> tuple[tuple[str, ...], dict[str, _Node]]:
    if isinstance(patterns, str):
        raise EncryptionError(f"paths must be a list of paths, got the single string {patterns!r}")
    given: list[str] = []
    roots: dict[str, _Node] = {}
    for pattern in patterns:
        segments = parse(pattern)
        if len(segments) < 2:
            raise EncryptionError(
                f"encrypted path {pattern!r} must name a scope and a field, like 'user.email'; "
                "a whole scope cannot be one envelope"
            )
        if segments[0] == "*":
            raise EncryptionError(f"encrypted path {pattern!r}: the scope must be named, not '*'")
        if "**" in segments:
            raise EncryptionError(
                f"encrypted path {pattern!r}: '**' is not supported; name the object itself to encrypt "
                "its whole subtree as one value"
            )
        _insert(roots.setdefault(segments[0], _Node()), segments[1:])
        given.append(pattern)
    for root in roots.values():
        _normalize(root)
    return tuple(given), roots


_Group = tuple[dict[str, Any], Sequence[tuple[str, tuple[str, ...]]]]
"""An object holding declared fields, and those fields' names with their paths from the scope."""

_Memo = tuple[str, str, tuple[str, ...], bytes, Any]
"""What an envelope's text was authenticated for: (storage key, scope, path, plaintext), and the value the
plaintext decodes to if it may be shared (else _ABSENT)."""

_ABSENT: Any = object()

_SHAREABLE = frozenset((str, int, bool, type(None)))
"""Types of values that may be handed out more than once: immutable, and decoding their JSON gives back an
equal value of the same type (floats are left out: a NaN placed by a merge function encodes as null)."""

_MEMO_MAX_PLAINTEXT = 1024


_nonces: list[bytes] = []
"""Nonces cut from one os.urandom call of 4 KiB, each popped once (list.pop is atomic, so threads never
share one). Emptied in a forked child, so a parent and its child never share nonces either."""

os.register_at_fork(after_in_child=_nonces.clear)


_cut_nonces = struct.Struct(f"{NONCE_SIZE}s" * 341).unpack  # 341 nonces of 12 bytes: 4092 bytes


def _more_nonces() -> bytes:
    more: tuple[bytes, ...] = _cut_nonces(os.urandom(NONCE_SIZE * 341))
    _nonces.extend(more[1:])
    return more[0]


def _plan(
    node: _Node, data: dict[str, Any], path: tuple[str, ...], groups: list[_Group]
) -> dict[str, Any] | None:
    """Copy ``data`` along matched paths; list each copied object holding matched fields, with their
    paths. None if nothing matched."""
    copy: dict[str, Any] | None = None
    names: list[tuple[str, tuple[str, ...]]] | None = None
    children = node.children
    star = node.star
    # Try the declared names when they are fewer (and there is no '*'), otherwise the data's.
    for seg in children if star is None and len(children) <= len(data) else data:
        child = children.get(seg, star)
        if child is None or seg not in data:
            continue
        if child.terminal:
            if copy is None:
                copy = dict(data)
            if names is None:
                names = []
                groups.append((copy, names))
            names.append((seg, (*path, seg)))
        else:
            value = data[seg]
            if value.__class__ is dict and ENVELOPE_MARKER not in value:
                sub = _plan(child, value, (*path, seg), groups)
                if sub is not None:
                    if copy is None:
                        copy = dict(data)
                    copy[seg] = sub
            elif value is not None:
                # not an object where a declared path goes through one: sealed whole (see the module doc)
                if copy is None:
                    copy = dict(data)
                if names is None:
                    names = []
                    groups.append((copy, names))
                names.append((seg, (*path, seg)))
    return copy


def _visit(node: _Node, data: dict[str, Any], path: tuple[str, ...], groups: list[_Group]) -> None:
    """List each object holding matched fields, with their paths, without copying."""
    names: list[tuple[str, tuple[str, ...]]] | None = None
    children = node.children
    star = node.star
    # Try the declared names when they are fewer (and there is no '*'), otherwise the data's.
    for seg in children if star is None and len(children) <= len(data) else data:
        child = children.get(seg, star)
        if child is None or seg not in data:
            continue
        if child.terminal:
            if names is None:
                names = []
                groups.append((data, names))
            names.append((seg, (*path, seg)))
        else:
            value = data[seg]
            if value.__class__ is dict and not is_envelope(value):
                _visit(child, value, (*path, seg), groups)
            elif value is not None:
                # an envelope sealing a value that was not an object, or plaintext that must not be there
                if names is None:
                    names = []
                    groups.append((data, names))
                names.append((seg, (*path, seg)))


class FieldEncryption:
    """Encrypts the declared fields of a scope's data before storage and decrypts them after loading.

    ``paths``: state paths with the scope first, ``*`` matching one field name. ``keys``: the ring.
    ``allow_plaintext``: migration mode, off by default; plaintext found at a declared path is then
    returned as is (and encrypted on the next write) instead of raising PlaintextFieldError.

    A value other than an object or null where a declared path goes through an object (``a.b`` holding a
    string, number, bool or list, with ``a.b.*`` declared) is encrypted whole, as one envelope for that
    level's path, and read back from it; plaintext found there is refused like plaintext at a declared
    field. So a declared path protects everything under it, whatever shape the data takes.

    Every encryption uses a fresh nonce, so encrypting equal data twice gives different bytes, unless the
    same ``sealed`` record is passed to :meth:`decrypt_data` and :meth:`encrypt_data`: unchanged fields
    then keep their envelope, and the encrypted form of unchanged data is byte-for-byte the stored one.

    ``decrypted_cache``: how many envelopes (of up to 1 KiB of plaintext each) to remember the plaintext
    of, once this instance has decrypted them. An envelope is only ever taken from this memory for the
    exact text, storage key, scope and path it was authenticated for, under this instance's keys, so a
    turn over a document this process has read skips AES for its unchanged fields and anything altered,
    moved or relabelled is still decrypted and fails. 0 keeps no plaintext between calls (and tells the
    turn engine not to keep documents decrypted either).
    """

    __slots__ = (
        "_ad_cache",
        "_allow_plaintext",
        "_cipher",
        "_envelope_fields",
        "_flat",
        "_head",
        "_keys",
        "_memo",
        "_memo_half",
        "_memo_old",
        "_memo_size",
        "_paths",
        "_primary",
        "_random",
        "_roots",
        "_scopes",
        "_suffixes",
    )

    def __init__(
        self,
        paths: Iterable[str],
        keys: KeyRing,
        *,
        allow_plaintext: bool = False,
        decrypted_cache: int = 4096,
    ) -> None:
        if not isinstance(keys, KeyRing):
            raise KeyRingError(
                f"keys must be a KeyRing, got {type(keys).__name__}; resolve a provider first with "
                "'await load_keys(source)'"
            )
        check_decrypted_cache(decrypted_cache)
        self._paths, self._roots = _compile(paths)
        # scopes whose declared fields are all top-level names: walked with a plain loop, no recursion
        self._flat: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = {
            scope: tuple((name, (name,)) for name in root.children)
            for scope, root in self._roots.items()
            if root.star is None and all(child.terminal for child in root.children.values())
        }
        self._scopes = frozenset(self._roots)
        self._envelope_fields = {
            scope: frozenset(name for name, child in root.children.items() if child.terminal)
            for scope, root in self._roots.items()
        }
        self._keys = keys
        self._primary = keys.primary
        self._cipher = keys._ciphers[keys.primary]
        self._head = f"{ENVELOPE_VERSION}.{keys.primary}."
        self._allow_plaintext = bool(allow_plaintext)
        # Test hook: the known-answer test sets a fixed nonce source; None draws from _nonces.
        self._random: Callable[[int], bytes] | None = None
        self._ad_cache: dict[tuple[str, str, str], bytes] = {}
        self._suffixes: dict[tuple[str, ...], bytes] = {}
        self._memo: dict[str, _Memo] = {}
        self._memo_old: dict[str, _Memo] = {}
        self._memo_size = decrypted_cache
        self._memo_half = max(1, decrypted_cache // 2)

    @staticmethod
    def check_paths(paths: Iterable[str]) -> None:
        """Raise ValueError for a malformed path pattern, without needing keys."""
        _compile(paths)

    def __repr__(self) -> str:
        return (
            f"FieldEncryption(paths={list(self._paths)!r}, keys={self._keys!r}, "
            f"allow_plaintext={self._allow_plaintext}, decrypted_cache={self._memo_size})"
        )

    @property
    def paths(self) -> tuple[str, ...]:
        return self._paths

    @property
    def keys(self) -> KeyRing:
        return self._keys

    @property
    def allow_plaintext(self) -> bool:
        return self._allow_plaintext

    @property
    def decrypted_cache(self) -> int:
        """How many envelopes' plaintext this instance remembers (0: none)."""
        return self._memo_size

    @property
    def scopes(self) -> frozenset[str]:
        """Names of the scopes that have at least one encrypted path."""
        return self._scopes

    def envelope_fields(self, scope: str) -> frozenset[str]:
        """Top-level fields of ``scope`` declared by name whose stored value is one envelope, made and
        read only by this class and never edited in place (``*`` patterns are not listed)."""
        return self._envelope_fields.get(scope, frozenset())

    def with_keys(self, keys: KeyRing) -> FieldEncryption:
        """Return the same paths and mode over another ring (for example after promoting a key)."""
        return FieldEncryption(
            self._paths, keys, allow_plaintext=self._allow_plaintext, decrypted_cache=self._memo_size
        )

    # -- which fields ------------------------------------------------------------------------------------

    def _locate(self, scope: str, path: Sequence[str]) -> tuple[bool, _Node | None]:
        """(covered, node reached): covered if ``path`` or an ancestor is a declared field."""
        node = self._roots.get(scope)
        for segment in path:
            if node is None:
                return False, None
            if node.terminal:
                return True, node
            node = node.children.get(segment, node.star)
        return (node is not None and node.terminal), node

    def covers(self, scope: str, path: Sequence[str]) -> bool:
        """True if the value at ``path`` (within ``scope``) is stored inside an envelope whatever it is.
        (A level a declared path goes through is too when it holds neither an object nor null.)"""
        return self._locate(scope, path)[0]

    def mask(self, scope: str, path: Sequence[str]) -> bool:
        """True if the value at ``path`` is, or may contain, an encrypted field: keep it out of reprs,
        logs and messages (use :meth:`redact` to show the rest of a value)."""
        covered, node = self._locate(scope, path)
        return covered or node is not None

    def redact(self, scope: str, data: dict[str, Any]) -> dict[str, Any]:
        """Return a copy of ``data`` with every encrypted field replaced by ``"<encrypted>"``."""
        root = self._roots.get(scope)
        if root is None:
            return dict(data)
        groups: list[_Group] = []
        out = _plan(root, data, (), groups) or dict(data)
        for container, names in groups:
            for name, _ in names:
                container[name] = REDACTED
        return out

    # -- encryption --------------------------------------------------------------------------------------

    def _ad_prefix(self, kid: str, storage_key: str, scope: str) -> bytes:
        # The associated data is the JSON array ["v1", kid, storage key, scope, [path...]]; this is its
        # opening part, to which each field appends its path array and the closing bracket. A turn
        # decrypts and encrypts the same documents, so the last few prefixes are kept.
        cache_key = (kid, storage_key, scope)
        prefix = self._ad_cache.get(cache_key)
        if prefix is None:
            if len(self._ad_cache) >= _AD_CACHE_SIZE:
                self._ad_cache.clear()
            prefix = self._ad_cache[cache_key] = _encode((ENVELOPE_VERSION, *cache_key))[:-1] + b","
        return prefix

    def _suffix(self, path: tuple[str, ...]) -> bytes:
        # the field path closing the associated data, encoded once per path
        suffix = self._suffixes.get(path)
        if suffix is None:
            if len(self._suffixes) >= _AD_CACHE_SIZE:
                self._suffixes.clear()
            suffix = self._suffixes[path] = _encode(path) + b"]"
        return suffix

    def encrypt_data(
        self, scope: str, storage_key: str, data: dict[str, Any], sealed: Sealed | None = None
    ) -> dict[str, Any]:
        """Return a new dict in which each present declared field holds its envelope.

        Only the objects along encrypted paths are copied; ``data`` and its values are left untouched.
        ``sealed`` (filled by :meth:`decrypt_data` for the same document) lets a field whose value did not
        change keep the envelope it was loaded with, if that is under the primary key, instead of being
        encrypted again; each new envelope is added to it, so encrypting unchanged data again gives the
        same result.
        """
        groups: Sequence[_Group]
        flat = self._flat.get(scope)
        if flat is not None:
            out = data.copy()
            groups = ((out, flat),)
        else:
            root = self._roots.get(scope)
            if root is None:
                return data.copy()
            groups = []
            planned = _plan(root, data, (), groups)
            if planned is None:
                return data.copy()
            out = planned
        ad_prefix: bytes | None = None  # looked up when the first field is sealed anew
        suffixes = self._suffixes
        for container, names in groups:
            for name, path in names:
                value = container.get(name, _ABSENT)
                if value is _ABSENT:
                    continue
                kept = None if sealed is None else sealed.get(path)
                # the very object loaded or sealed before, and immutable: its envelope still holds it
                if kept is not None and kept[2] is value and value.__class__ in _SHAREABLE:
                    container[name] = kept[1]
                    continue
                try:
                    plaintext = _encode(value)
                except (TypeError, ValueError, OverflowError) as exc:
                    raise EncryptionError(
                        f"cannot encrypt field {_show(scope, path)!r} of {storage_key!r}: a "
                        f"{type(value).__name__} has no JSON form"
                    ) from exc
                if kept is not None and kept[0] == plaintext:
                    envelope = container[name] = kept[1]
                    if sealed is not None:  # it is: kept came from it
                        sealed[path] = (plaintext, envelope, value)
                    continue
                if self._random is None:
                    try:
                        nonce = _nonces.pop()
                    except IndexError:
                        nonce = _more_nonces()
                else:
                    nonce = self._random(NONCE_SIZE)
                    if len(nonce) != NONCE_SIZE:
                        raise EncryptionError("the random source returned too few bytes")
                if ad_prefix is None:
                    ad_prefix = self._ad_prefix(self._primary, storage_key, scope)
                ad = ad_prefix + (suffixes.get(path) or self._suffix(path))
                text = (
                    self._head
                    + _b2a(nonce + self._cipher.encrypt(nonce, plaintext, ad), newline=False).decode()
                )
                envelope = container[name] = {ENVELOPE_MARKER: text}
                if sealed is not None:
                    sealed[path] = (plaintext, envelope, value)
        return out

    def decrypt_data(
        self, scope: str, storage_key: str, data: dict[str, Any], sealed: Sealed | None = None
    ) -> dict[str, Any]:
        """Replace, in place, each envelope at a declared path by its value; return ``data``.

        Raises DecryptionError (tampered, moved, unknown key id, malformed) or PlaintextFieldError
        (plaintext at a declared path, unless ``allow_plaintext``), naming the key and path. ``sealed``,
        if given, receives each primary-key envelope with its plaintext, for :meth:`encrypt_data`.
        """
        groups: Sequence[_Group]
        flat = self._flat.get(scope)
        if flat is not None:
            groups = ((data, flat),)
        else:
            root = self._roots.get(scope)
            if root is None:
                return data
            groups = []
            _visit(root, data, (), groups)
        memo = self._memo
        older = self._memo_old
        remember = self._memo_size
        head = self._head
        prefix: bytes | None = None  # looked up when the first field is decrypted with AES
        suffixes = self._suffixes
        for container, names in groups:
            for name, path in names:
                value = container.get(name, _ABSENT)
                if value is _ABSENT:
                    continue
                if value.__class__ is not dict or ENVELOPE_MARKER not in value:
                    if self._allow_plaintext:
                        continue
                    raise PlaintextFieldError(storage_key, _show(scope, path))
                text = value[ENVELOPE_MARKER]
                if text.__class__ is str and len(value) == 1:
                    # An envelope this instance authenticated, for this very key, scope and path:
                    # the same bytes under the same key and associated data decrypt to the same plaintext.
                    known = (memo.get(text) or older.get(text)) if remember else None
                    if (
                        known is not None
                        and known[0] == storage_key
                        and known[1] == scope
                        and known[2] == path
                    ):
                        decoded = known[4]
                        if decoded is _ABSENT:
                            decoded = _decode(known[3])
                        container[name] = decoded
                        if sealed is not None:
                            sealed[path] = (known[3], value, decoded)
                        continue
                    # Fast path: a well-formed envelope under the primary key. Anything else (an older key,
                    # a failure) goes to _open, which checks every step and raises the precise error.
                    if text.startswith(head):
                        if prefix is None:
                            prefix = self._ad_prefix(self._primary, storage_key, scope)
                        try:
                            raw = _a2b(text[len(head) :], strict_mode=True)
                            plaintext = self._cipher.decrypt(
                                raw[:NONCE_SIZE],
                                raw[NONCE_SIZE:],
                                prefix + (suffixes.get(path) or self._suffix(path)),
                            )
                            decoded = _decode(plaintext)
                        except (ValueError, InvalidTag, msgspec.DecodeError):
                            pass
                        else:
                            container[name] = decoded
                            if sealed is not None:
                                sealed[path] = (plaintext, value, decoded)
                            if remember and len(plaintext) <= _MEMO_MAX_PLAINTEXT:
                                if len(memo) >= self._memo_half:
                                    # two generations of half the size each: dropping the older one is
                                    # O(1), unlike evicting the oldest entry of one dict one at a time
                                    self._memo_old = older = memo
                                    self._memo = memo = {}
                                shared = decoded if decoded.__class__ in _SHAREABLE else _ABSENT
                                memo[text] = (storage_key, scope, path, plaintext, shared)
                            continue
                container[name] = self._open(value, scope, storage_key, path, self._keys)
        return data

    def forget_decrypted(self) -> None:
        """Drop every plaintext remembered by ``decrypted_cache``. (A manager with this option on also
        keeps the documents it wrote decrypted in its document cache: ``manager.documents.clear()``.)"""
        self._memo = {}
        self._memo_old = {}

    def _open(
        self,
        envelope: dict[str, Any],
        scope: str,
        storage_key: str,
        path: tuple[str, ...],
        ring: KeyRing,
    ) -> Any:
        """Decrypt one envelope with every check spelled out; raises the precise DecryptionError."""
        text = envelope[ENVELOPE_MARKER]
        if len(envelope) != 1 or type(text) is not str:
            raise DecryptionError(
                storage_key,
                _show(scope, path),
                f"malformed envelope: expected exactly {{{ENVELOPE_MARKER!r}: str}}",
            )
        parts = text.split(".")
        if len(parts) != 3 or parts[0] != ENVELOPE_VERSION:
            version = parts[0] if len(parts) == 3 and re.fullmatch(r"v[0-9]{1,4}", parts[0]) else None
            reason = (
                f"envelope format {version!r} is not supported by this release "
                f"(it reads {ENVELOPE_VERSION!r})"
                if version
                else f"malformed envelope: expected '{ENVELOPE_VERSION}.<key id>.<base64>'"
            )
            raise DecryptionError(storage_key, _show(scope, path), reason)
        kid = parts[1]
        cipher = ring._ciphers.get(kid)
        if cipher is None:
            if not KEY_ID.match(kid):
                raise DecryptionError(storage_key, _show(scope, path), "malformed envelope: invalid key id")
            raise DecryptionError(
                storage_key,
                _show(scope, path),
                f"it was encrypted under key id {kid!r}, which the key ring does not hold "
                f"(it holds {', '.join(map(repr, ring.ids))}); add that key, decrypt-only, to the ring",
            )
        try:
            raw = _a2b(parts[2], strict_mode=True)
        except ValueError as exc:
            raise DecryptionError(storage_key, _show(scope, path), "malformed envelope: bad base64") from exc
        if len(raw) < _MIN_RAW:
            raise DecryptionError(storage_key, _show(scope, path), "malformed envelope: too short")
        prefix = self._ad_prefix(kid, storage_key, scope)
        try:
            plaintext = cipher.decrypt(raw[:NONCE_SIZE], raw[NONCE_SIZE:], prefix + self._suffix(path))
        except InvalidTag as exc:
            raise DecryptionError(
                storage_key,
                _show(scope, path),
                "authentication failed: the value was altered, copied from another document or field, or "
                f"encrypted with a different key that has the same id {kid!r}",
            ) from exc
        try:
            return _decode(plaintext)
        except msgspec.DecodeError as exc:
            raise DecryptionError(
                storage_key,
                _show(scope, path),
                "the decrypted bytes are not JSON (written by another program?)",
            ) from exc

    def needs_reencrypt(self, scope: str, data: dict[str, Any]) -> bool:
        """True if stored ``data`` has a declared field not held in an envelope under the primary key
        (an older key, plaintext, or something malformed that decrypt_data will reject)."""
        root = self._roots.get(scope)
        if root is None:
            return False
        groups: list[_Group] = []
        _visit(root, data, (), groups)
        head = self._head
        for container, names in groups:
            for name, _ in names:
                value = container[name]
                if not is_envelope(value) or not value[ENVELOPE_MARKER].startswith(head):
                    return True
        return False


def check_decrypted_cache(size: object) -> None:
    """Raise ValueError unless ``size`` is a valid ``decrypted_cache``: 0 (off) or a positive count."""
    if type(size) is not int or size < 0:
        raise ValueError(f"decrypted_cache must be 0 (off) or more envelopes, got {size!r}")


def _show(scope: str, path: tuple[str, ...]) -> str:
    return join(scope, *path)
