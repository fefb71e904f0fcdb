"""In-process storage: the embedded default for development, tests and single-process bots."""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Collection, Mapping
from typing import ClassVar

from turnstate.errors import PreconditionFailedError
from turnstate.storage.base import (
    ANY_ETAG,
    Capabilities,
    Storage,
    StoredItem,
    WriteItem,
    check_keys,
    check_write,
)

# (item as read, expires_at): a plain tuple; the immutable StoredItem (which carries the same expires_at) is
# built once per write, not per read.
_Entry = tuple[StoredItem, float | None]


class MemoryStorage(Storage):
    """Keeps encoded bytes in a dict, so nothing a handler mutates reaches storage before commit.

    ``max_entries`` bounds memory: the least recently used entries are evicted past it. ``clock`` gives
    Unix time in seconds (default ``time.time``; ``StoredItem.expires_at`` is on it), and exists so expiry
    can be tested without sleeping. Safe under concurrent tasks and threads; not shared between processes.
    """

    capabilities: ClassVar[Capabilities] = Capabilities(atomic_batch=True, native_ttl=True, list_keys=True)

    _SWEEP_EVERY = 1024

    def __init__(self, *, max_entries: int | None = None, clock: Callable[[], float] = time.time) -> None:
        if max_entries is not None and max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, got {max_entries!r}")
        self._data: OrderedDict[str, _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self._max_entries = max_entries
        self._clock = clock
        self._etag_prefix = os.urandom(4).hex() + "-"
        self._counter = itertools.count(1)
        self._writes_since_sweep = 0

    def __len__(self) -> int:
        return len(self._data)

    async def read(self, keys: Collection[str]) -> dict[str, StoredItem]:
        found: dict[str, StoredItem] = {}
        now: float | None = None
        lru = self._max_entries is not None
        lock = self._lock
        lock.acquire()  # not `with`: on this hot path its special-method lookups cost more than the work
        try:
            data = self._data
            for key in keys:
                if key.__class__ is not str or not key or not key.isascii():
                    check_keys((key,))  # raises for a key no storage accepts, naming it
                entry = data.get(key)
                if entry is None:
                    continue
                expires = entry[1]
                if expires is not None:
                    if now is None:
                        now = self._clock()
                    if expires <= now:
                        del data[key]
                        continue
                if lru:
                    data.move_to_end(key)
                found[key] = entry[0]
        finally:
            lock.release()
        return found

    async def write(self, items: Mapping[str, WriteItem]) -> dict[str, str]:
        if not items:
            return {}
        now: float | None = None  # the clock is read only if an expiry is involved
        lock = self._lock
        lock.acquire()  # see read
        try:
            data = self._data
            failed: list[str] = []
            for key, item in items.items():
                if (
                    item.__class__ is not WriteItem
                    or key.__class__ is not str
                    or not key
                    or not key.isascii()
                    or (item.ttl is not None and not item.ttl > 0)
                ):
                    check_write(items)  # raises for anything no storage accepts, naming the key
                match = item.if_match
                if match == ANY_ETAG:
                    continue
                entry = data.get(key)
                if entry is not None and entry[1] is not None:
                    if now is None:
                        now = self._clock()
                    if entry[1] <= now:
                        entry = None
                if entry is None:
                    if match is None:
                        continue
                elif match is not None and entry[0].etag == match:
                    continue
                failed.append(key)
            if failed:
                raise PreconditionFailedError(failed)
            # one new ETag for the batch: every key it writes gets a value no earlier write of it had
            etag = f"{self._etag_prefix}{next(self._counter)}"
            limit = self._max_entries
            for key, item in items.items():
                value, ttl = item.value, item.ttl
                expires = None
                if ttl is not None:
                    if now is None:
                        now = self._clock()
                    expires = now + ttl
                stored = StoredItem(value if value.__class__ is bytes else bytes(value), etag, expires)
                data[key] = (stored, expires)
                if limit is not None:
                    data.move_to_end(key)
            if limit is not None:
                while len(data) > limit:
                    data.popitem(last=False)
            written = self._writes_since_sweep = self._writes_since_sweep + len(items)
            # a sweep walks every entry, so sweeping once per len(data) writes keeps writes O(1) amortized
            if written >= self._SWEEP_EVERY and written >= len(data):
                self._sweep(self._clock())
        finally:
            lock.release()
        return dict.fromkeys(items, etag)

    async def delete(self, keys: Collection[str]) -> None:
        check_keys(keys)
        with self._lock:
            for key in keys:
                self._data.pop(key, None)

    async def list_keys(self, prefix: str = "") -> AsyncIterator[str]:
        now = self._clock()
        with self._lock:
            keys = [
                key
                for key, entry in self._data.items()
                if key.startswith(prefix) and (entry[1] is None or entry[1] > now)
            ]
        for key in keys:
            yield key

    def purge_expired(self) -> int:
        """Drop every expired entry now; return how many were dropped."""
        with self._lock:
            return self._sweep(self._clock())

    def _sweep(self, now: float) -> int:
        self._writes_since_sweep = 0
        expired = [k for k, e in self._data.items() if e[1] is not None and e[1] <= now]
        for key in expired:
            del self._data[key]
        return len(expired)
