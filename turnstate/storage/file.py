"""Crash-safe storage in a directory of files, shared safely by several processes on one host (POSIX).

Layout of the directory::

    <name>            one document per key, <name> = encode_key(key)
    .tmp-<random>     a write in progress, or one a crash cut short (purge_expired removes it later)
    .locks/<name>     the key's flock(2) lock file, removed again when the key is deleted

A document file is a JSON envelope ``{"format":1,"key":...,"etag":...,"expires_at":...,"value":{...}}``
with the stored value embedded byte for byte. A write goes to a temporary file that is fsynced, then,
under the key's lock and after its precondition is checked, renamed over the document and the directory
fsynced: readers and crashes see the old document or the new one, never a torn file.

Documents and lock files are opened without following symbolic links and without blocking, and anything
that is not a regular file (a FIFO, a device, a socket, a directory, a link) is refused with a typed error
naming the key; a document file is read up to :data:`MAX_DOCUMENT_BYTES`.

Each call does its file work in one worker thread (``asyncio.to_thread``): one thread hop per call rather
than one per file operation, and a thread that holds key locks never waits for another pool thread.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import logging
import os
import stat
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from typing import ClassVar, NamedTuple

import msgspec

from turnstate.errors import (
    CorruptDocumentError,
    InvalidItemError,
    InvalidKeyError,
    PreconditionFailedError,
    StorageError,
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

TEMP_PREFIX = ".tmp-"
LOCK_DIR = ".locks"
_FORMAT = 1

MAX_DOCUMENT_BYTES = 64 * 1024 * 1024
"""The largest document file read or written (envelope included); a larger value is refused on write."""

# O_NONBLOCK: opening a FIFO (or a device) must not wait for a writer; it is refused right after by fstat.
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_LOCK_FLAGS = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class _Envelope(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    format: int
    key: str
    etag: str
    expires_at: float | None
    value: msgspec.Raw


class _Staged(NamedTuple):
    key: str
    name: str
    if_match: str | None
    etag: str
    data: bytes


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(_Envelope)
_raw_decoder = msgspec.json.Decoder(msgspec.Raw)


def _checked_value(key: str, value: bytes) -> bytes:
    value = bytes(value)
    try:
        raw = _raw_decoder.decode(value)
    except msgspec.DecodeError as exc:
        raise InvalidItemError(key, f"the value is not valid JSON ({exc})") from exc
    except RecursionError:
        raise InvalidItemError(key, "the value is nested too deeply to be read back") from None
    if not value.startswith(b"{") or len(raw) != len(value):
        raise InvalidItemError(key, "the value must be one JSON object with no whitespace around it")
    return value


def _not_a_file(mode: int) -> str:
    """What stands where a regular file belongs, for error messages."""
    for test, what in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a named pipe (FIFO)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISLNK, "a symbolic link"),
    ):
        if test(mode):
            return what
    return "something that is not a regular file"


def _shown_key(name: str) -> str:
    """The key a file name stands for, or the name itself where that is unknown (hashed or foreign)."""
    try:
        return decode_key(name) or name
    except InvalidKeyError:
        return name


def _expired(envelope: _Envelope, now: float) -> bool:
    return envelope.expires_at is not None and envelope.expires_at <= now


class _ThreadLocks:
    """One threading lock per lock file path, for the threads of this process.

    flock alone is correct (locks on separate descriptors conflict within a process too), but a thread
    can only poll for it; threads queued here are woken the moment the holder is done, so contention
    inside one process costs no polling delay. An entry lives only while some thread uses it.
    """

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, tuple[threading.Lock, int]] = {}

    def acquire(self, path: str, timeout: float) -> bool:
        with self._guard:
            lock, users = self._locks.get(path) or (threading.Lock(), 0)
            self._locks[path] = (lock, users + 1)
        if lock.acquire(timeout=max(timeout, 0)):
            return True
        self._forget(path)
        return False

    def release(self, path: str) -> None:
        self._locks[path][0].release()
        self._forget(path)

    def _forget(self, path: str) -> None:
        with self._guard:
            lock, users = self._locks[path]
            if users == 1:
                del self._locks[path]
            else:
                self._locks[path] = (lock, users - 1)


_THREAD_LOCKS = _ThreadLocks()


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
        self._lock_dir = os.path.join(self._root, LOCK_DIR)
        self._dir_prefix = os.path.join(self._root, "")  # names never hold a separator: join by concatenation
        self._lock_prefix = os.path.join(self._lock_dir, "")
        self._fsync = fsync
        self._lock_timeout = lock_timeout
        self._stale_temp_after = stale_temp_after
        self._clock = clock
        self._skipped_guard = threading.Lock()
        self._skipped = 0
        try:
            os.makedirs(self._lock_dir, mode=0o700, exist_ok=True)
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
            value = _checked_value(key, item.value)
            etag = uuid.uuid4().hex
            expires_at = None if item.ttl is None else now + item.ttl
            data = _encoder.encode(_Envelope(_FORMAT, key, etag, expires_at, msgspec.Raw(value)))
            if len(data) > MAX_DOCUMENT_BYTES:
                raise InvalidItemError(
                    key, f"the document would be {len(data)} bytes, over the {MAX_DOCUMENT_BYTES} byte limit"
                )
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
            if envelope is not None and not _expired(envelope, now):
                found[key] = StoredItem(bytes(envelope.value), envelope.etag, envelope.expires_at)
        return found

    def _load(self, key: str, name: str) -> _Envelope | None:
        """The key's document as stored (expired or not), None if there is no file."""
        path = self._dir_prefix + name
        data = self._read_file(key, path)
        return None if data is None else self._parse(key, path, data)

    def _read_file(self, key: str, path: str) -> bytes | None:
        """The file's bytes, None if there is none; never follows a link, blocks, or reads past the limit."""
        try:
            fd = os.open(path, _READ_FLAGS)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise CorruptDocumentError(key, self._refused("a symbolic link"), path) from None
            if exc.errno == errno.ENXIO:
                raise CorruptDocumentError(key, self._refused("a socket or device"), path) from None
            raise self._unavailable(f"read the document for {key!r}", path, exc) from exc
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise CorruptDocumentError(key, self._refused(_not_a_file(info.st_mode)), path)
            parts: list[bytes] = []
            size = 0
            want = min(info.st_size, MAX_DOCUMENT_BYTES) + 1
            while True:
                # A short read means the end of a regular file: one read for a file that did not grow.
                part = os.read(fd, want)
                parts.append(part)
                size += len(part)
                if size > MAX_DOCUMENT_BYTES:
                    raise CorruptDocumentError(
                        key, f"the file is over the {MAX_DOCUMENT_BYTES} byte limit of a document", path
                    )
                if len(part) < want:
                    return parts[0] if len(parts) == 1 else b"".join(parts)
                want = MAX_DOCUMENT_BYTES + 1 - size
        except OSError as exc:
            raise self._unavailable(f"read the document for {key!r}", path, exc) from exc
        finally:
            os.close(fd)

    @staticmethod
    def _refused(what: str) -> str:
        return f"{what} stands where the document file belongs (never followed or read); remove it"

    @staticmethod
    def _parse(key: str | None, path: str, data: bytes) -> _Envelope:
        """Decode a document file; ``key`` None accepts whatever key it names (hashed file names)."""
        shown = key if key is not None else os.path.basename(path)
        try:
            envelope = _decoder.decode(data)
        except msgspec.DecodeError as exc:
            raise CorruptDocumentError(shown, f"not a turnstate document file ({exc})", path) from exc
        except RecursionError:
            raise CorruptDocumentError(shown, "its JSON is nested too deeply to read", path) from None
        if envelope.format != _FORMAT:
            raise CorruptDocumentError(
                shown, f"file format {envelope.format} is not supported (this release reads {_FORMAT})", path
            )
        if key is not None and envelope.key != key:
            raise CorruptDocumentError(
                key, "the file belongs to another key (copied or renamed by hand, or a hash collision)", path
            )
        if not bytes(envelope.value).startswith(b"{"):
            raise CorruptDocumentError(shown, "the stored value is not a JSON object", path)
        return envelope

    # -- writing --------------------------------------------------------------------------------------

    def _write_sync(self, staged: list[_Staged], now: float) -> tuple[dict[str, str], list[str]]:
        temps: dict[str, str] = {}
        written: dict[str, str] = {}
        try:
            try:
                for item in staged:
                    temps[item.name] = self._write_temp(item.data)
            except OSError as exc:
                raise self._unavailable(f"write {_keys(staged)}", self._root, exc) from exc
            with self._locked({item.name: item.key for item in staged}):
                failed = [item.key for item in staged if not self._precondition_holds(item, now)]
                for item in staged:
                    if item.key in failed:
                        continue
                    target = self._dir_prefix + item.name
                    try:
                        os.replace(temps.pop(item.name), target)
                    except OSError as exc:
                        raise self._partial(f"write {item.key!r}", target, exc, written) from exc
                    written[item.key] = item.etag
                if written and self._fsync:
                    try:
                        self._sync_dir()
                    except OSError as exc:
                        raise self._partial("make the write durable", self._root, exc, written) from exc
            return written, failed
        finally:
            for temp in temps.values():
                # Best effort: purge_expired removes whatever a failure here leaves behind.
                with suppress(OSError):
                    os.unlink(temp)

    def _write_temp(self, data: bytes) -> str:
        path = self._dir_prefix + TEMP_PREFIX + os.urandom(8).hex()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if self._fsync:
                os.fsync(fd)
        except BaseException:
            os.close(fd)
            os.unlink(path)
            raise
        os.close(fd)
        return path

    def _precondition_holds(self, item: _Staged, now: float) -> bool:
        # Read even for "*": a corrupt or foreign file is never overwritten without a word.
        current = self._load(item.key, item.name)
        if current is not None and _expired(current, now):
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
            with self._locked({name: key}):
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
                    raise self._unavailable(f"delete {key!r}", path, exc) from exc
        if removed and self._fsync:
            try:
                self._sync_dir()
            except OSError as exc:
                raise self._unavailable("make the delete durable", self._root, exc) from exc

    def _sync_dir(self) -> None:
        fd = os.open(self._root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    # -- locking --------------------------------------------------------------------------------------

    @contextmanager
    def _locked(self, names: Mapping[str, str]) -> Iterator[None]:
        """Hold the lock of every name (mapped to its key, named in errors), taken in sorted order so
        batches never deadlock.

        On release, a lock file whose document does not exist is removed while still held; whoever
        waited on it notices (inode check in _acquire) and locks the new file instead.
        """
        deadline = time.monotonic() + self._lock_timeout
        held: list[tuple[str, int]] = []
        try:
            for name in sorted(names):
                path = self._lock_prefix + name
                if not _THREAD_LOCKS.acquire(path, deadline - time.monotonic()):
                    raise self._timed_out(path, "another task of this process")
                try:
                    held.append((name, self._acquire(name, names[name], deadline)))
                except BaseException:
                    _THREAD_LOCKS.release(path)
                    raise
            yield
        finally:
            for name, fd in held:
                try:
                    if not os.path.lexists(self._dir_prefix + name):
                        # Best effort: a lock file left behind is harmless and purge_expired removes it.
                        with suppress(OSError):
                            os.unlink(self._lock_prefix + name)
                finally:
                    os.close(fd)
                    _THREAD_LOCKS.release(self._lock_prefix + name)

    def _timed_out(self, path: str, holder: str) -> StorageUnavailableError:
        return StorageUnavailableError(
            f"timed out after {self._lock_timeout} s waiting for the lock {path!r}: {holder} kept it that "
            "long. Look for a hung process or task using this directory; nothing was written."
        )

    def _acquire(self, name: str, key: str, deadline: float) -> int:
        path = self._lock_prefix + name
        delay = 0.0001
        while True:
            try:
                fd = os.open(path, _LOCK_FLAGS, 0o600)
            except FileNotFoundError:
                os.makedirs(self._lock_dir, mode=0o700, exist_ok=True)
                continue
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENXIO):
                    raise self._bad_lock(key, "a symbolic link, socket or device", path) from None
                raise self._unavailable(f"open the lock file of {key!r}", path, exc) from exc
            try:
                mode = os.fstat(fd).st_mode
                if not stat.S_ISREG(mode):
                    raise self._bad_lock(key, _not_a_file(mode), path)
                while True:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        if time.monotonic() >= deadline:
                            raise self._timed_out(path, "another process") from None
                        time.sleep(delay)
                        delay = min(delay * 2, 0.002)
                try:
                    current = os.stat(path, follow_symlinks=False)
                except FileNotFoundError:
                    current = None
                mine = os.fstat(fd)
                if current is not None and (current.st_ino, current.st_dev) == (mine.st_ino, mine.st_dev):
                    return fd
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)  # the file was removed while we waited: lock its successor

    @staticmethod
    def _bad_lock(key: str, what: str, path: str) -> CorruptDocumentError:
        return CorruptDocumentError(
            key,
            f"{what} stands where the key's lock file belongs (never followed or used); remove that "
            "entry of the lock directory",
            path,
        )

    # -- listing and purging --------------------------------------------------------------------------

    def _data_names(self) -> list[str]:
        try:
            return [name for name in os.listdir(self._root) if not name.startswith(".")]
        except OSError as exc:
            raise self._unavailable("list", self._root, exc) from exc

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
                data = self._read_file(key or name, path)
                if data is None:
                    continue
                envelope = self._parse(key, path, data)
                if key is None and encode_key(envelope.key) != name:
                    raise CorruptDocumentError(
                        envelope.key, "the file is stored under another key's name", path
                    )
            except CorruptDocumentError as exc:
                self._skip("list_keys", exc)
                continue
            if envelope.key.startswith(prefix) and not _expired(envelope, now):
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
            raise self._unavailable("list", self._root, exc) from exc
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
                raise self._unavailable("purge", entry.path, exc) from exc
        self._purge_orphan_locks()
        if removed and self._fsync:
            try:
                self._sync_dir()
            except OSError as exc:
                raise self._unavailable("make the purge durable", self._root, exc) from exc
        return removed

    def _purge_document(self, name: str, now: float) -> bool:
        try:
            key = decode_key(name)
        except InvalidKeyError:
            return False
        path = self._dir_prefix + name
        data = self._read_file(key or name, path)
        if data is None:
            return False
        envelope = self._parse(key, path, data)
        if not _expired(envelope, now):
            return False
        with self._locked({name: envelope.key}):
            # Check again under the lock: another process may have rewritten it meanwhile.
            data = self._read_file(envelope.key, path)
            if data is None or not _expired(self._parse(key, path, data), now):
                return False
            os.unlink(path)
            return True

    def _purge_orphan_locks(self) -> None:
        try:
            names = os.listdir(self._lock_dir)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise self._unavailable("list", self._lock_dir, exc) from exc
        for name in names:
            if os.path.lexists(self._dir_prefix + name):
                continue
            lock_path = self._lock_prefix + name
            try:
                fd = os.open(lock_path, _LOCK_FLAGS & ~os.O_CREAT)
            except FileNotFoundError:
                continue
            except OSError as exc:
                if exc.errno not in (errno.ELOOP, errno.ENXIO):
                    raise self._unavailable("open the lock file", lock_path, exc) from exc
                what = "a symbolic link, socket or device"
                self._skip("purge_expired", self._bad_lock(_shown_key(name), what, lock_path))
                continue
            mode = os.fstat(fd).st_mode
            if not stat.S_ISREG(mode):
                os.close(fd)
                self._skip("purge_expired", self._bad_lock(_shown_key(name), _not_a_file(mode), lock_path))
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue  # in use right now; a later purge gets it
            try:
                if not os.path.lexists(self._dir_prefix + name):
                    with suppress(FileNotFoundError):
                        os.unlink(lock_path)
            finally:
                os.close(fd)

    # -- errors ---------------------------------------------------------------------------------------

    @staticmethod
    def _unavailable(what: str, path: str, exc: OSError) -> StorageUnavailableError:
        code = errno.errorcode.get(exc.errno or 0, "?")
        return StorageUnavailableError(
            f"file storage could not {what} at {path!r}: {exc.strerror or exc} ({code}). "
            "Check free space, permissions and that the directory still exists."
        )

    @staticmethod
    def _partial(what: str, path: str, exc: OSError, written: Mapping[str, str]) -> StorageError:
        """StorageUnavailableError if nothing was written yet, else a StorageError naming what was."""
        if not written:
            return FileStorage._unavailable(what, path, exc)
        code = errno.errorcode.get(exc.errno or 0, "?")
        done = ", ".join(repr(k) for k in written)
        return StorageError(
            f"file storage could not {what} at {path!r}: {exc.strerror or exc} ({code}), after this call "
            f"had already written {done}. Check free space and permissions."
        )


def _keys(staged: Sequence[_Staged]) -> str:
    return ", ".join(repr(item.key) for item in staged)
