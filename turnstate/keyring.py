"""The keys field encryption uses: a ring with one primary key, and where rings come from.

A key ring is validated when it is built: every key exactly 32 bytes, ids unique and made of
``A-Z a-z 0-9 _ -``, the primary present. Key bytes never appear in a repr, a log line or an error.
Rings come from the environment (:meth:`KeyRing.from_env`, format ``"kid2:<base64>,kid1:<base64>"``, the
first being the primary) or from a :class:`KeyProvider` of your own, loaded with :func:`load_keys`.
"""

from __future__ import annotations

import binascii
import os
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol, runtime_checkable

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from turnstate.errors import KeyRingError

KEY_SIZE = 32
DEFAULT_KEYS_ENV = "TURNSTATE_KEYS"
KEY_ID = re.compile(r"[A-Za-z0-9_-]{1,64}\Z")
"""What a key id may look like (no '.', which separates envelope fields)."""

_GENERATE_HINT = (
    'generate a key with: python -c "import base64, os; print(base64.b64encode(os.urandom(32)).decode())"'
)
_TO_STD = bytes.maketrans(b"-_", b"+/")
_PADDING = ("", "===", "==", "=")


class Cipher(Protocol):
    """An AEAD cipher under one key, as field encryption uses it (AES-256-GCM for a ring's keys)."""

    def encrypt(self, nonce: bytes, data: bytes, associated_data: bytes, /) -> bytes: ...

    def decrypt(self, nonce: bytes, data: bytes, associated_data: bytes, /) -> bytes: ...


def _check_key_id(kid: object, where: str) -> str:
    if not isinstance(kid, str) or not KEY_ID.match(kid):
        shown = repr(kid) if isinstance(kid, str) and len(kid) <= 80 else f"a {type(kid).__name__}"
        raise KeyRingError(
            f"{where}: key id {shown} is invalid; use 1-64 characters from A-Z a-z 0-9 '_' '-' "
            "(no '.', which separates envelope fields)"
        )
    return kid


class KeyRing:
    """The keys field encryption may use: one primary key for new writes, older keys decrypt-only.

    ``KeyRing({"k2": key2, "k1": key1}, primary="k2")``; with a single key, ``primary`` may be omitted.
    Every key is exactly 32 bytes. Rotation: add the new key everywhere (decrypt-only), promote it with
    :meth:`with_primary`, then run :func:`turnstate.reencrypt.reencrypt` and finally drop the old key.
    The repr shows key ids only.
    """

    __slots__ = ("_ciphers", "_keys", "_primary")

    def __init__(self, keys: Mapping[str, bytes], primary: str | None = None) -> None:
        if not isinstance(keys, Mapping):
            raise KeyRingError(f"keys must be a mapping of key id to 32 key bytes, got {type(keys).__name__}")
        if not keys:
            raise KeyRingError(f"a key ring needs at least one key; {_GENERATE_HINT}")
        checked: dict[str, bytes] = {}
        for kid, key in keys.items():
            _check_key_id(kid, "key ring")
            if isinstance(key, str):
                raise KeyRingError(
                    f"key {kid!r} is a str; pass the 32 raw key bytes (decode base64 first), "
                    "or build the ring with KeyRing.from_string / KeyRing.from_env"
                )
            if not isinstance(key, bytes | bytearray | memoryview):
                raise KeyRingError(f"key {kid!r} must be bytes, got {type(key).__name__}")
            raw = bytes(key)
            if len(raw) != KEY_SIZE:
                raise KeyRingError(
                    f"key {kid!r} is {len(raw)} bytes; AES-256 keys must be exactly {KEY_SIZE} bytes. "
                    f"{_GENERATE_HINT}"
                )
            checked[kid] = raw
        if primary is None:
            if len(checked) != 1:
                raise KeyRingError(
                    f"a key ring with several keys ({', '.join(map(repr, checked))}) needs primary=<key id>"
                )
            primary = next(iter(checked))
        elif primary not in checked:
            raise KeyRingError(
                f"primary key id {primary!r} is not in the ring (it holds {', '.join(map(repr, checked))})"
            )
        self._keys = checked
        self._primary = primary
        self._ciphers: dict[str, Cipher] = {kid: AESGCM(raw) for kid, raw in checked.items()}

    @classmethod
    def from_string(cls, spec: str, *, source: str = "key ring spec") -> KeyRing:
        """Parse ``"kid1:base64key,kid2:base64key"``; the first entry is the primary key.

        Keys are standard or URL-safe base64 (padding optional) of exactly 32 bytes. Whitespace around
        entries is ignored. Errors name ``source`` and the entry, never the key text.
        """
        if not isinstance(spec, str) or not spec.strip():
            raise KeyRingError(
                f"{source} is empty; expected 'kid:base64key[,kid:base64key...]'. {_GENERATE_HINT}"
            )
        keys: dict[str, bytes] = {}
        primary: str | None = None
        for number, entry in enumerate(spec.split(","), start=1):
            entry = entry.strip()
            kid, sep, encoded = entry.partition(":")
            kid = kid.strip()
            where = f"{source}, entry {number}"
            if not sep:
                raise KeyRingError(f"{where} has no ':'; expected 'kid:base64key'")
            _check_key_id(kid, where)
            if kid in keys:
                raise KeyRingError(f"{where}: key id {kid!r} appears more than once")
            encoded = encoded.strip()
            try:
                raw = binascii.a2b_base64(
                    (encoded + _PADDING[len(encoded) % 4]).encode("ascii").translate(_TO_STD),
                    strict_mode=True,
                )
            except (binascii.Error, UnicodeEncodeError) as exc:
                raise KeyRingError(f"{where} (key id {kid!r}): the key is not valid base64") from exc
            if len(raw) != KEY_SIZE:
                raise KeyRingError(
                    f"{where} (key id {kid!r}): the key is {len(raw)} bytes after base64 decoding; "
                    f"it must be exactly {KEY_SIZE}. {_GENERATE_HINT}"
                )
            keys[kid] = raw
            if primary is None:
                primary = kid
        return cls(keys, primary=primary)

    @classmethod
    def from_env(cls, var: str = DEFAULT_KEYS_ENV, environ: Mapping[str, str] | None = None) -> KeyRing:
        """Read the ring from an environment variable in :meth:`from_string` format (first key primary)."""
        env = os.environ if environ is None else environ
        spec = env.get(var)
        if spec is None:
            raise KeyRingError(
                f"environment variable {var!r} is not set; field encryption needs it, formatted as "
                f"'kid:base64key[,kid:base64key...]' with the primary key first. {_GENERATE_HINT}"
            )
        return cls.from_string(spec, source=f"environment variable {var!r}")

    @staticmethod
    def generate_key() -> bytes:
        """Return 32 fresh random bytes, suitable as a key."""
        return os.urandom(KEY_SIZE)

    @property
    def primary(self) -> str:
        """The key id new encryptions use."""
        return self._primary

    @property
    def ids(self) -> tuple[str, ...]:
        """Every key id in the ring, in insertion order."""
        return tuple(self._keys)

    def cipher(self, kid: str) -> Cipher | None:
        """The AES-256-GCM cipher of key ``kid``, or None if the ring does not hold that key."""
        return self._ciphers.get(kid)

    def __contains__(self, kid: object) -> bool:
        return kid in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        return f"KeyRing(primary={self._primary!r}, ids={self.ids!r})"

    def with_primary(self, kid: str) -> KeyRing:
        """Return a ring with the same keys and ``kid`` as the primary."""
        return KeyRing(self._keys, primary=kid)

    def with_key(self, kid: str, key: bytes, *, primary: bool = False) -> KeyRing:
        """Return a ring with ``kid`` added (decrypt-only unless ``primary``)."""
        if kid in self._keys:
            raise KeyRingError(f"key id {kid!r} is already in the ring; key ids are never reused")
        return KeyRing({**self._keys, kid: key}, primary=kid if primary else self._primary)

    def without_key(self, kid: str) -> KeyRing:
        """Return a ring without ``kid``; the primary cannot be removed."""
        if kid not in self._keys:
            raise KeyRingError(
                f"key id {kid!r} is not in the ring (it holds {', '.join(map(repr, self._keys))})"
            )
        if kid == self._primary:
            raise KeyRingError(f"key id {kid!r} is the primary; promote another key before removing it")
        return KeyRing({k: v for k, v in self._keys.items() if k != kid}, primary=self._primary)


@runtime_checkable
class KeyProvider(Protocol):
    """A user-supplied key source (a vault, a KMS-unwrapped file, ...): ``await provider.load()``."""

    async def load(self) -> KeyRing: ...


KeySource = KeyRing | KeyProvider | Callable[[], Awaitable[KeyRing]]
"""What :func:`load_keys` accepts: a ring, a provider, or an async callable returning a ring."""


class EnvKeys:
    """A :class:`KeyProvider` reading :meth:`KeyRing.from_env` (``TURNSTATE_KEYS`` by default)."""

    __slots__ = ("var",)

    def __init__(self, var: str = DEFAULT_KEYS_ENV) -> None:
        self.var = var

    def __repr__(self) -> str:
        return f"EnvKeys({self.var!r})"

    async def load(self) -> KeyRing:
        return KeyRing.from_env(self.var)


async def load_keys(source: KeySource) -> KeyRing:
    """Resolve a key source to a ring; raise KeyRingError if it yields anything else."""
    if isinstance(source, KeyRing):
        return source
    ring = await (source.load() if isinstance(source, KeyProvider) else source())
    if not isinstance(ring, KeyRing):
        raise KeyRingError(f"key source {source!r} returned {type(ring).__name__}, not a KeyRing")
    return ring
