"""The storage protocol every backend implements.

The docstrings in this module are the contract; backends document only where they differ, and
``turnstate.testing`` checks it.

* Keys are non-empty strings, opaque to the backend. A backend that cannot store a key as given must
  encode it reversibly (or hash it and keep the real key beside the value, checked on read).
* Values are bytes: the UTF-8 JSON encoding of an object. ``read`` returns exactly the bytes written.
* Every stored item has an opaque ETag that changes on every write. ETags are compared for equality only.
* Every write states a precondition per key, in ``WriteItem.if_match``:
  ``"*"`` (:data:`ANY_ETAG`) writes unconditionally; ``None`` writes only if the key does not exist
  (create-only); any other string writes only if the stored ETag equals it. A failed precondition raises
  :class:`~turnstate.errors.PreconditionFailedError` naming the keys.
* ``WriteItem.ttl`` (seconds, > 0) makes the item expire that long after this write; an expired item reads
  as absent. ``None`` means it never expires. ``read`` reports each item's expiry in
  ``StoredItem.expires_at``.

Edge cases: ``read([])`` returns ``{}``; unknown keys are omitted from ``read``'s result; ``write({})`` does
nothing; deleting an unknown key is fine; an empty key, or one that is not valid Unicode text (a lone
surrogate, which has no UTF-8 form), raises :class:`~turnstate.errors.InvalidKeyError` before anything is
read or written.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Collection, Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import ClassVar, Self

import msgspec

from turnstate.errors import InvalidItemError, InvalidKeyError, PreconditionFailedError

ANY_ETAG = "*"
"""``WriteItem.if_match`` value meaning "write whatever is stored"."""


class StoredItem(msgspec.Struct, frozen=True, gc=False):
    """One item as read from storage.

    ``expires_at``: when the item expires (Unix time in seconds, as set by the ``ttl`` of its last write),
    or None if it never expires. Tools that rewrite items use it to keep each item's remaining lifetime.
    """

    value: bytes
    etag: str
    expires_at: float | None = None


class WriteItem(msgspec.Struct, frozen=True, gc=False):
    """One item to write, with its precondition and optional time to live.

    ``if_match``: ``"*"`` unconditional, ``None`` create-only, otherwise the ETag that must be stored.
    """

    value: bytes
    if_match: str | None = ANY_ETAG
    ttl: float | None = None


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a backend guarantees beyond the base contract. Declared by the backend, never probed.

    ``atomic_batch``: a multi-key ``write`` is all-or-nothing; when any precondition fails nothing is
    written. Without it, keys whose precondition holds are written and reported in
    ``PreconditionFailedError.written``.
    ``native_ttl``: the backend itself removes expired items (otherwise they read as absent and are
    removed lazily or by a purge).
    ``list_keys``: ``list_keys(prefix)`` is implemented.
    ``shared``: several processes (or hosts) can use the same data at once with preconditions intact.
    """

    atomic_batch: bool = False
    native_ttl: bool = False
    list_keys: bool = False
    shared: bool = False


def check_keys(keys: Iterable[str]) -> None:
    """Raise InvalidKeyError for a key that no backend accepts: not a str, empty, or not UTF-8 encodable."""
    for key in keys:
        if key.__class__ is str and key and key.isascii():  # isascii is O(1) on CPython
            continue
        if not isinstance(key, str):
            raise InvalidKeyError(repr(key), f"keys are str, got {type(key).__name__}")
        if not key:
            raise InvalidKeyError(key, "the empty string is not a key")
        try:
            key.encode()
        except UnicodeEncodeError as exc:
            raise InvalidKeyError(
                key,
                f"it is not valid Unicode text (a lone surrogate at offset {exc.start}), so it has no UTF-8 "
                "form to store; check where the id was decoded",
            ) from None


def check_write(items: Mapping[str, WriteItem]) -> None:
    """Validate a write batch before any of it is applied."""
    check_keys(items)
    for key, item in items.items():
        if item.__class__ is not WriteItem:
            raise InvalidItemError(key, f"expected a WriteItem, got {type(item).__name__}")
        if item.ttl is not None and not item.ttl > 0:
            raise InvalidItemError(key, f"ttl must be a positive number of seconds, got {item.ttl!r}")


def settle_writes(outcomes: Iterable[tuple[str, str | BaseException | None]]) -> dict[str, str]:
    """The new ETags of a batch written key by key (no atomic batch): each outcome is a key's new ETag,
    None if its precondition failed, or the error its write raised.

    Raises the first error; else PreconditionFailedError naming the keys whose precondition failed (with
    those written); else returns the ETags.
    """
    written: dict[str, str] = {}
    failed: list[str] = []
    problem: BaseException | None = None
    for key, outcome in outcomes:
        if isinstance(outcome, str):
            written[key] = outcome
        elif outcome is None:
            failed.append(key)
        elif problem is None:
            problem = outcome
    if problem is not None:
        raise problem
    if failed:
        raise PreconditionFailedError(failed, written)
    return written


class Storage(abc.ABC):
    """Async key/value storage with ETag preconditions and per-item expiry."""

    capabilities: ClassVar[Capabilities] = Capabilities()

    @abc.abstractmethod
    async def read(self, keys: Collection[str]) -> dict[str, StoredItem]:
        """Read several keys in one call. Absent and expired keys are left out of the result."""

    @abc.abstractmethod
    async def write(self, items: Mapping[str, WriteItem]) -> dict[str, str]:
        """Write several items in one call, checking each precondition; return each key's new ETag.

        Raises PreconditionFailedError when any precondition fails (see ``Capabilities.atomic_batch`` for
        what happens to the other keys).
        """

    @abc.abstractmethod
    async def delete(self, keys: Collection[str]) -> None:
        """Delete several keys unconditionally. Unknown keys are ignored."""

    async def list_keys(self, prefix: str = "") -> AsyncIterator[str]:
        """Yield every live key that starts with ``prefix``, in no particular order.

        Only backends that declare ``Capabilities.list_keys`` implement it.
        """
        raise NotImplementedError(f"{type(self).__name__} does not support listing keys")
        yield  # pragma: no cover  (makes this an async generator)

    async def aclose(self) -> None:  # noqa: B027  (a no-op is the right default)
        """Release connections and files this storage opened itself. Idempotent."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
