"""Crash-safe storage in a directory of files, shared safely by several processes on one host (POSIX).

Layout of the directory::

    <name>            one document per key, <name> = encode_key(key)
    .tmp-<random>     a write in progress, or one a crash cut short (purge_expired removes it later)
    .locks/<name>     the key's flock(2) lock file, removed again when the key is deleted

A document file is a JSON envelope (:mod:`turnstate.storage.fileformat`). A write goes to a temporary
file that is fsynced, then, under the key's lock (:mod:`turnstate.storage.filelocks`) and after its
precondition is checked, renamed over the document and the directory fsynced: readers and crashes see the
old document or the new one, never a torn file. Files are opened as :mod:`turnstate.storage.fileio`
describes: never through a link, never blocking, regular files only.

Each call does its file work in one worker thread (``asyncio.to_thread``): one thread hop per call rather
than one per file operation, and a thread that holds key locks never waits for another pool thread.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from contextlib import suppress
from typing import ClassVar, NamedTuple

from turnstate.errors import (
    CorruptDocumentError,
    InvalidKeyError,
    PreconditionFailedError,
    StorageUnavailableError,
)
from turnstate.storage.base import (
    ANY_ETAG,
    Capabilities,
    Storage,
    StoredItem,
    WriteItem,
    check_keys,
    check_write,
)
from turnstate.storage.fileformat import (
    MAX_DOCUMENT_BYTES,
    Envelope,
    encode_document,
    expired,
    parse_document,
)
from turnstate.storage.fileio import (
    TEMP_PREFIX,
    partial_failure,
    read_document_file,
    sync_directory,
    unavailable,
    write_temp,
)
from turnstate.storage.filelocks import LOCK_DIR, KeyLocks
from turnstate.storage.filenames import MAX_NAME_LENGTH, decode_key, encode_key

__all__ = [
    "LOCK_DIR",
    "MAX_DOCUMENT_BYTES",
    "MAX_NAME_LENGTH",
    "TEMP_PREFIX",
    "FileStorage",
    "decode_key",
    "encode_key",
]

_log = logging.getLogger(__name__)


class _Staged(NamedTuple):
    key: str
    name: str
    if_match: str | None
    etag: str
    data: bytes


class FileStorage(Storage):
    """Documents as files under ``path`` (created if missing), with ETags, TTL and cross-process locks.

    Several processes on one host may share the directory: preconditions are checked under a per-key
    ``flock`` lock (released by the kernel if a process dies), and batches lock their keys in sorted
    order. Not for network file systems whose ``flock`` is not coherent across hosts.

    ``fsync`` (default on) makes a returned write durable across power loss; off, writes are still atomic
    but the last ones may be lost in an OS crash. ``lock_timeout`` bounds the wait for a key's lock
    (StorageUnavailableError past it). ``clock`` gives wall-clock epoch seconds for expiry; expiry times
    are stored absolute, so every process sharing the directory needs the same clock. Expired documents
    read as absent; :meth:`purge_expired` removes them and temporary files older than
    ``stale_temp_after`` seconds. Values must be one JSON object with no surrounding whitespace, and a
    document file at most :data:`MAX_DOCUMENT_BYTES`; files are created readable by their owner only. A
    write whose task is cancelled may still complete.

    A damaged or foreign file in place of a document raises CorruptDocumentError (naming the key and the
    file) when that key is read or written; :meth:`list_keys` and :meth:`purge_expired` skip it, log a
    warning naming the file and count it in :attr:`unreadable_skipped`. ``delete`` removes whatever file
    stands at the key's name without reading it, so any key can be repaired by deleting it.

    A batch is not atomic: keys whose precondition holds are written, and a crash mid-batch can leave
    some keys of it written.
    """

    capabilities: ClassVar[Capabilities] = Capabilities(
        atomic_batch=False, native_ttl=False, list_keys=True, shared=True
    )

    def __init__(
        self,
        path: str | os.PathLike[str] = "./bot-state",
        *,
        fsync: bool = True,
        lock_timeout: float = 10.0,
        stale_temp_after: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not lock_timeout > 0:
            raise ValueError(f"lock_timeout must be a positive number of seconds, got {lock_timeout!r}")
        if not stale_temp_after >= 0:
            raise ValueError(f"stale_temp_after must be >= 0 seconds, got {stale_temp_after!r}")
        self._root = os.path.abspath(os.fspath(path))
        self._dir_prefix = os.path.join(self._root, "")  # names never hold a separator: join by concatenation
        self._locks = KeyLocks(self._root, lock_timeout)
        self._fsync = fsync
        self._stale_temp_after = stale_temp_after
        self._clock = clock
        self._skipped_guard = threading.Lock()
        self._skipped = 0
        try:
            os.makedirs(self._locks.directory, mode=0o700, exist_ok=True)
        except OSError as exc:
            raise StorageUnavailableError(
                f"cannot create the state directory {self._root!r} (with its {LOCK_DIR} subdirectory): "
                f"{exc.strerror}. Check the path and its permissions."
            ) from exc

    @property
    def path(self) -> str:
        """The absolute path of the state directory."""
        return self._root

    @property
    def unreadable_skipped(self) -> int:
        """How many unreadable files :meth:`list_keys` and :meth:`purge_expired` skipped (each logged)."""
        return self._skipped

    def path_for(self, key: str) -> str:
        """The file that holds ``key``'s document."""
        check_keys([key])
        return self._dir_prefix + encode_key(key)

    # -- protocol -------------------------------------------------------------------------------------

    async def read(self, keys: Collection[str]) -> dict[str, StoredItem]:
        check_keys(keys)
        if not keys:
            return {}
        named = [(key, encode_key(key)) for key in dict.fromkeys(keys)]
        return await asyncio.to_thread(self._read_sync, named, self._clock())

    async def write(self, items: Mapping[str, WriteItem]) -> dict[str, str]:
        if not items:
            return {}
        check_write(items)
        now = self._clock()
        staged: list[_Staged] = []
        for key, item in items.items():
            name = encode_key(key)
            etag = uuid.uuid4().hex
            expires_at = None if item.ttl is None else now + item.ttl
            data = encode_document(key, item.value, etag, expires_at)
            staged.append(_Staged(key, name, item.if_match, etag, data))
        written, failed = await asyncio.to_thread(self._write_sync, staged, now)
        if failed:
            raise PreconditionFailedError(failed, written)
        return written

    async def delete(self, keys: Collection[str]) -> None:
        check_keys(keys)
        if keys:
            named = sorted({(encode_key(key), key) for key in keys})
            await asyncio.to_thread(self._delete_sync, named)

    async def list_keys(self, prefix: str = "") -> AsyncIterator[str]:
        names = await asyncio.to_thread(self._data_names)
        now = self._clock()
        for start in range(0, len(names), 256):
            for key in await asyncio.to_thread(self._live_keys, names[start : start + 256], prefix, now):
                yield key

    async def purge_expired(self) -> int:
        """Remove expired documents and stale temporary files; return how many files were removed.

        Also removes lock files left without a document by a crash (not counted). A corrupt document is
        left in place, logged and counted in :attr:`unreadable_skipped`, so one bad file does not stop the
        purge.
        """
        return await asyncio.to_thread(self._purge_sync, self._clock())

    # -- reading --------------------------------------------------------------------------------------

    def _read_sync(self, named: list[tuple[str, str]], now: float) -> dict[str, StoredItem]:
        found: dict[str, StoredItem] = {}
        for key, name in named:
            envelope = self._load(key, name)
            if envelope is not None and not expired(envelope, now):
                found[key] = StoredItem(bytes(envelope.value), envelope.etag, envelope.expires_at)
        return found

    def _load(self, key: str, name: str) -> Envelope | None:
        """The key's document as stored (expired or not), None if there is no file."""
        path = self._dir_prefix + name
        data = read_document_file(key, path)
        return None if data is None else parse_document(key, path, data)

    # -- writing --------------------------------------------------------------------------------------

    def _write_sync(self, staged: list[_Staged], now: float) -> tuple[dict[str, str], list[str]]:
        temps: dict[str, str] = {}
        written: dict[str, str] = {}
        try:
            try:
                for item in staged:
                    temps[item.name] = write_temp(self._dir_prefix, item.data, fsync=self._fsync)
            except OSError as exc:
                raise unavailable(f"write {_keys(staged)}", self._root, exc) from exc
            with self._locks.held({item.name: item.key for item in staged}):
                failed = [item.key for item in staged if not self._precondition_holds(item, now)]
                for item in staged:
                    if item.key in failed:
                        continue
                    target = self._dir_prefix + item.name
                    try:
                        os.replace(temps.pop(item.name), target)
                    except OSError as exc:
                        raise partial_failure(f"write {item.key!r}", target, exc, written) from exc
                    written[item.key] = item.etag
                if written and self._fsync:
                    try:
                        sync_directory(self._root)
                    except OSError as exc:
                        raise partial_failure("make the write durable", self._root, exc, written) from exc
            return written, failed
        finally:
            for temp in temps.values():
                # Best effort: purge_expired removes whatever a failure here leaves behind.
                with suppress(OSError):
                    os.unlink(temp)

    def _precondition_holds(self, item: _Staged, now: float) -> bool:
        # Read even for "*": a corrupt or foreign file is never overwritten without a word.
        current = self._load(item.key, item.name)
        if current is not None and expired(current, now):
            current = None
        if item.if_match == ANY_ETAG:
            return True
        if item.if_match is None:
            return current is None
        return current is not None and current.etag == item.if_match

    def _delete_sync(self, named: list[tuple[str, str]]) -> None:
        removed = False
        for name, key in named:
            path = self._dir_prefix + name
            with self._locks.held({name: key}):
                try:
                    os.unlink(path)
                    removed = True
                except FileNotFoundError:
                    pass
                except IsADirectoryError as exc:
                    raise CorruptDocumentError(
                        key, "a directory stands where the document belongs", path
                    ) from exc
                except OSError as exc:
                    raise unavailable(f"delete {key!r}", path, exc) from exc
        if removed and self._fsync:
            try:
                sync_directory(self._root)
            except OSError as exc:
                raise unavailable("make the delete durable", self._root, exc) from exc

    # -- listing and purging --------------------------------------------------------------------------

    def _data_names(self) -> list[str]:
        try:
            return [name for name in os.listdir(self._root) if not name.startswith(".")]
        except OSError as exc:
            raise unavailable("list", self._root, exc) from exc

    def _live_keys(self, names: list[str], prefix: str, now: float) -> list[str]:
        keys = []
        for name in names:
            try:
                key = decode_key(name)
            except InvalidKeyError:
                continue  # not a file of ours: no key can live there
            if key is not None and not key.startswith(prefix):
                continue
            path = self._dir_prefix + name
            try:
                data = read_document_file(key or name, path)
                if data is None:
                    continue
                envelope = parse_document(key, path, data)
                if key is None and encode_key(envelope.key) != name:
                    raise CorruptDocumentError(
                        envelope.key, "the file is stored under another key's name", path
                    )
            except CorruptDocumentError as exc:
                self._skip("list_keys", exc)
                continue
            if envelope.key.startswith(prefix) and not expired(envelope, now):
                keys.append(envelope.key)
        return keys

    def _skip(self, what: str, exc: CorruptDocumentError) -> None:
        with self._skipped_guard:
            self._skipped += 1
        _log.warning("%s skipped an unreadable file and left it in place: %s", what, exc)

    def _purge_sync(self, now: float) -> int:
        removed = 0
        wall_now = time.time()
        try:
            entries = list(os.scandir(self._root))
        except OSError as exc:
            raise unavailable("list", self._root, exc) from exc
        for entry in entries:
            try:
                if entry.name.startswith(TEMP_PREFIX):
                    if wall_now - entry.stat(follow_symlinks=False).st_mtime > self._stale_temp_after:
                        os.unlink(entry.path)
                        removed += 1
                elif not entry.name.startswith(".") and self._purge_document(entry.name, now):
                    removed += 1
            except FileNotFoundError:
                continue  # removed by someone else meanwhile
            except CorruptDocumentError as exc:
                self._skip("purge_expired", exc)
            except OSError as exc:
                raise unavailable("purge", entry.path, exc) from exc
        self._locks.purge_orphans(lambda exc: self._skip("purge_expired", exc))
        if removed and self._fsync:
            try:
                sync_directory(self._root)
            except OSError as exc:
                raise unavailable("make the purge durable", self._root, exc) from exc
        return removed

    def _purge_document(self, name: str, now: float) -> bool:
        try:
            key = decode_key(name)
        except InvalidKeyError:
            return False
        path = self._dir_prefix + name
        data = read_document_file(key or name, path)
        if data is None:
            return False
        envelope = parse_document(key, path, data)
        if not expired(envelope, now):
            return False
        with self._locks.held({name: envelope.key}):
            # Check again under the lock: another process may have rewritten it meanwhile.
            data = read_document_file(envelope.key, path)
            if data is None or not expired(parse_document(key, path, data), now):
                return False
            os.unlink(path)
            return True


def _keys(staged: Sequence[_Staged]) -> str:
    return ", ".join(repr(item.key) for item in staged)
