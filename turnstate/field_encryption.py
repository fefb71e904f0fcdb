"""Field encryption: the declared fields of a scope's data stored as envelopes, and read back from them.

What is encrypted is described in :mod:`turnstate.encrypted_paths`, how in :mod:`turnstate.envelope`.
Everything fails closed: a bad tag, an unknown key id, a malformed envelope, or plaintext where a field is
declared encrypted raises an :class:`~turnstate.errors.EncryptionError` naming the storage key and path.
No message or repr carries a field value or key bytes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Final

import msgspec

from turnstate.codec import Sealed
from turnstate.encrypted_paths import EncryptedPaths, Group
from turnstate.envelope import ENVELOPE_MARKER, Envelopes, field_label, is_envelope
from turnstate.errors import DecryptionError, EncryptionError, KeyRingError, PlaintextFieldError
from turnstate.keyring import KeyRing

REDACTED = "<encrypted>"

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode

_Memo = tuple[str, str, tuple[str, ...], bytes, Any]
"""What an envelope's text was authenticated for: (storage key, scope, path, plaintext), and the value the
plaintext decodes to if it may be shared (else _ABSENT)."""

_ABSENT: Any = object()

_SHAREABLE = frozenset((str, int, bool, type(None)))
"""Types of values that may be handed out more than once: immutable, and decoding their JSON gives back an
equal value of the same type (floats are left out: a NaN placed by a merge function encodes as null)."""

_MEMO_MAX_PLAINTEXT = 1024


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
        "_allow_plaintext",
        "_envelopes",
        "_flat",
        "_memo",
        "_memo_half",
        "_memo_old",
        "_memo_size",
        "_tree",
        "remembers_plaintext",
        "scopes",
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
        self._tree = EncryptedPaths(paths)
        self._flat = self._tree.flat
        self.scopes: Final[frozenset[str]] = self._tree.scopes
        """Names of the scopes that have at least one encrypted path."""
        self.remembers_plaintext: Final[bool] = decrypted_cache > 0
        """Whether ``decrypted_cache`` is on: then the turn engine may keep documents decrypted, too."""
        self._envelopes = Envelopes(keys)
        self._allow_plaintext = bool(allow_plaintext)
        self._memo: dict[str, _Memo] = {}
        self._memo_old: dict[str, _Memo] = {}
        self._memo_size = decrypted_cache
        self._memo_half = max(1, decrypted_cache // 2)

    @staticmethod
    def check_paths(paths: Iterable[str]) -> None:
        """Raise EncryptionError (a ValueError) for a malformed path pattern, without needing keys."""
        EncryptedPaths(paths)

    def __repr__(self) -> str:
        return (
            f"FieldEncryption(paths={list(self.paths)!r}, keys={self.keys!r}, "
            f"allow_plaintext={self._allow_plaintext}, decrypted_cache={self._memo_size})"
        )

    @property
    def paths(self) -> tuple[str, ...]:
        return self._tree.patterns

    @property
    def keys(self) -> KeyRing:
        return self._envelopes.ring

    @property
    def allow_plaintext(self) -> bool:
        return self._allow_plaintext

    @property
    def decrypted_cache(self) -> int:
        """How many envelopes' plaintext this instance remembers (0: none)."""
        return self._memo_size

    def envelope_fields(self, scope: str) -> frozenset[str]:
        """Top-level fields of ``scope`` declared by name whose stored value is one envelope, made and
        read only by this class and never edited in place (``*`` patterns are not listed)."""
        return self._tree.envelope_fields.get(scope, frozenset())

    def with_keys(self, keys: KeyRing) -> FieldEncryption:
        """Return the same paths and mode over another ring (for example after promoting a key)."""
        return FieldEncryption(
            self.paths, keys, allow_plaintext=self._allow_plaintext, decrypted_cache=self._memo_size
        )

    # -- which fields ------------------------------------------------------------------------------------

    def covers(self, scope: str, path: Sequence[str]) -> bool:
        """True if the value at ``path`` (within ``scope``) is stored inside an envelope whatever it is.
        (A level a declared path goes through is too when it holds neither an object nor null.)"""
        return self._tree.locate(scope, path)[0]

    def mask(self, scope: str, path: Sequence[str]) -> bool:
        """True if the value at ``path`` is, or may contain, an encrypted field: keep it out of reprs,
        logs and messages (use :meth:`redact` to show the rest of a value)."""
        return self._tree.locate(scope, path)[1]

    def redact(self, scope: str, data: dict[str, Any]) -> dict[str, Any]:
        """Return a copy of ``data`` with every encrypted field replaced by ``"<encrypted>"``."""
        out, groups = self._tree.select(scope, data, copying=True)
        for container, names in groups:
            for name, _ in names:
                if name in container:
                    container[name] = REDACTED
        return out

    def needs_reencrypt(self, scope: str, data: dict[str, Any]) -> bool:
        """True if stored ``data`` has a declared field not held in an envelope under the primary key
        (an older key, plaintext, or something malformed that decrypt_data will reject)."""
        _, groups = self._tree.select(scope, data, copying=False)
        head = self._envelopes.head
        for container, names in groups:
            for name, _ in names:
                value = container.get(name, _ABSENT)
                if value is not _ABSENT and (
                    not is_envelope(value) or not value[ENVELOPE_MARKER].startswith(head)
                ):
                    return True
        return False

    # -- encryption --------------------------------------------------------------------------------------

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
        groups: Sequence[Group]
        flat = self._flat.get(scope)  # the common case, found without a call: this runs on every write
        if flat is not None:
            out = data.copy()
            groups = ((out, flat),)
        else:
            out, groups = self._tree.select(scope, data, copying=True)
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
                        f"cannot encrypt field {field_label(scope, path)!r} of {storage_key!r}: a "
                        f"{type(value).__name__} has no JSON form"
                    ) from exc
                if kept is not None and kept[0] == plaintext:
                    envelope = kept[1]
                else:
                    envelope = self._envelopes.seal(plaintext, storage_key, scope, path)
                container[name] = envelope
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
        flat = self._flat.get(scope)  # the common case, found without a call: this runs on every load
        groups = ((data, flat),) if flat is not None else self._tree.select(scope, data, copying=False)[1]
        for container, names in groups:
            for name, path in names:
                value = container.get(name, _ABSENT)
                if value is _ABSENT:
                    continue
                if value.__class__ is not dict or ENVELOPE_MARKER not in value:
                    if self._allow_plaintext:
                        continue
                    raise PlaintextFieldError(storage_key, field_label(scope, path))
                text = value[ENVELOPE_MARKER]
                # An envelope this instance opened before, for this very key, scope and path: the same
                # text under the same key and associated data holds the same plaintext.
                known = (
                    (self._memo.get(text) or self._memo_old.get(text))
                    if self._memo_size and text.__class__ is str
                    else None
                )
                if (
                    known is None
                    or known[0] != storage_key
                    or known[1] != scope
                    or known[2] != path
                    or len(value) != 1
                ):
                    container[name] = self._open(value, storage_key, scope, path, sealed)
                    continue
                decoded = known[4]
                if decoded is _ABSENT:
                    decoded = _decode(known[3])
                container[name] = decoded
                if sealed is not None:
                    sealed[path] = (known[3], value, decoded)
        return data

    def _open(
        self,
        envelope: dict[str, Any],
        storage_key: str,
        scope: str,
        path: tuple[str, ...],
        sealed: Sealed | None,
    ) -> Any:
        """The value in one envelope of this field, decrypted; remembered if it is under the primary key."""
        plaintext = self._envelopes.open(envelope, storage_key, scope, path)
        text = envelope[ENVELOPE_MARKER]
        try:
            decoded = _decode(plaintext)
        except msgspec.DecodeError as exc:
            raise DecryptionError(
                storage_key,
                field_label(scope, path),
                "the decrypted bytes are not JSON (written by another program?)",
            ) from exc
        # only envelopes under the primary key may be kept as they are, or remembered
        if text.startswith(self._envelopes.head):
            if sealed is not None:
                sealed[path] = (plaintext, envelope, decoded)
            if self._memo_size and len(plaintext) <= _MEMO_MAX_PLAINTEXT:
                shared = decoded if decoded.__class__ in _SHAREABLE else _ABSENT
                self._remember(text, (storage_key, scope, path, plaintext, shared))
        return decoded

    def _remember(self, text: str, memo: _Memo) -> None:
        if len(self._memo) >= self._memo_half:
            # two generations of half the size each: dropping the older one is O(1), unlike evicting the
            # oldest entry of one dict one at a time
            self._memo_old = self._memo
            self._memo = {}
        self._memo[text] = memo

    def forget_decrypted(self) -> None:
        """Drop every plaintext remembered by ``decrypted_cache``. (A manager with this option on also
        keeps the documents it wrote decrypted in its document cache: ``manager.documents.clear()``.)"""
        self._memo = {}
        self._memo_old = {}


def check_decrypted_cache(size: object) -> None:
    """Raise ValueError unless ``size`` is a valid ``decrypted_cache``: 0 (off) or a positive count."""
    if type(size) is not int or size < 0:
        raise ValueError(f"decrypted_cache must be 0 (off) or more envelopes, got {size!r}")
