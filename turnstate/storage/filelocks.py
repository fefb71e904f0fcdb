"""Per-key locks of a state directory, shared by the threads of a process and by processes on one host.

Each key has a lock file ``.locks/<name>`` locked with ``flock(2)`` (released by the kernel if a process
dies), and, inside one process, a threading lock per lock file so that waiting threads are woken at once
rather than polling. Lock files are opened like documents: never through a link, never blocking.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress

from turnstate.errors import CorruptDocumentError, InvalidKeyError, StorageUnavailableError
from turnstate.storage.fileio import not_a_file, unavailable
from turnstate.storage.filenames import decode_key

LOCK_DIR = ".locks"
"""The subdirectory of the state directory that holds the lock files."""

_LOCK_FLAGS = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class ThreadLocks:
    """One threading lock per lock file path, for the threads of this process.

    flock alone is correct (locks on separate descriptors conflict within a process too), but a thread
    can only poll for it; threads queued here are woken the moment the holder is done, so contention
    inside one process costs no polling delay. An entry lives only while some thread uses it.
    """

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, tuple[threading.Lock, int]] = {}

    def __len__(self) -> int:
        """How many paths some thread holds or waits for right now."""
        return len(self._locks)

    def acquire(self, path: str, timeout: float) -> bool:
        """Take the path's lock within ``timeout`` seconds; False if it could not."""
        with self._guard:
            lock, users = self._locks.get(path) or (threading.Lock(), 0)
            self._locks[path] = (lock, users + 1)
        if lock.acquire(timeout=max(timeout, 0)):
            return True
        self._forget(path)
        return False

    def release(self, path: str) -> None:
        """Give back the path's lock, taken with :meth:`acquire`."""
        self._locks[path][0].release()
        self._forget(path)

    def _forget(self, path: str) -> None:
        with self._guard:
            lock, users = self._locks[path]
            if users == 1:
                del self._locks[path]
            else:
                self._locks[path] = (lock, users - 1)


THREAD_LOCKS = ThreadLocks()
"""The table shared by every FileStorage of this process, whatever directory it uses."""


class KeyLocks:
    """The lock files of the state directory ``root``; a wait for one lasts at most ``timeout`` seconds."""

    def __init__(self, root: str, timeout: float) -> None:
        self.directory = os.path.join(root, LOCK_DIR)
        self._documents = os.path.join(root, "")  # names never hold a separator: join by concatenation
        self._prefix = os.path.join(self.directory, "")
        self._timeout = timeout

    @contextmanager
    def held(self, names: Mapping[str, str]) -> Iterator[None]:
        """Hold the lock of every name (mapped to its key, named in errors), taken in sorted order so
        batches never deadlock.

        On release, a lock file whose document does not exist is removed while still held; whoever
        waited on it notices (inode check in _acquire) and locks the new file instead.
        """
        deadline = time.monotonic() + self._timeout
        held: list[tuple[str, int]] = []
        try:
            for name in sorted(names):
                path = self._prefix + name
                if not THREAD_LOCKS.acquire(path, deadline - time.monotonic()):
                    raise self._timed_out(path, "another task of this process")
                try:
                    held.append((name, self._acquire(name, names[name], deadline)))
                except BaseException:
                    THREAD_LOCKS.release(path)
                    raise
            yield
        finally:
            for name, fd in held:
                try:
                    if not os.path.lexists(self._documents + name):
                        # Best effort: a lock file left behind is harmless and a purge removes it.
                        with suppress(OSError):
                            os.unlink(self._prefix + name)
                finally:
                    os.close(fd)
                    THREAD_LOCKS.release(self._prefix + name)

    def purge_orphans(self, unreadable: Callable[[CorruptDocumentError], None]) -> None:
        """Remove lock files left without a document (by a crash) that nobody holds.

        Something other than a regular file in the lock directory is left in place and passed to
        ``unreadable``.
        """
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise unavailable("list", self.directory, exc) from exc
        for name in names:
            if os.path.lexists(self._documents + name):
                continue
            lock_path = self._prefix + name
            try:
                fd = os.open(lock_path, _LOCK_FLAGS & ~os.O_CREAT)
            except FileNotFoundError:
                continue
            except OSError as exc:
                if exc.errno not in (errno.ELOOP, errno.ENXIO):
                    raise unavailable("open the lock file", lock_path, exc) from exc
                unreadable(_bad_lock(_shown_key(name), "a symbolic link, socket or device", lock_path))
                continue
            mode = os.fstat(fd).st_mode
            if not stat.S_ISREG(mode):
                os.close(fd)
                unreadable(_bad_lock(_shown_key(name), not_a_file(mode), lock_path))
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue  # in use right now; a later purge gets it
            try:
                if not os.path.lexists(self._documents + name):
                    with suppress(FileNotFoundError):
                        os.unlink(lock_path)
            finally:
                os.close(fd)

    def _acquire(self, name: str, key: str, deadline: float) -> int:
        path = self._prefix + name
        delay = 0.0001
        while True:
            try:
                fd = os.open(path, _LOCK_FLAGS, 0o600)
            except FileNotFoundError:
                os.makedirs(self.directory, mode=0o700, exist_ok=True)
                continue
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENXIO):
                    raise _bad_lock(key, "a symbolic link, socket or device", path) from None
                raise unavailable(f"open the lock file of {key!r}", path, exc) from exc
            try:
                mode = os.fstat(fd).st_mode
                if not stat.S_ISREG(mode):
                    raise _bad_lock(key, not_a_file(mode), path)
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

    def _timed_out(self, path: str, holder: str) -> StorageUnavailableError:
        return StorageUnavailableError(
            f"timed out after {self._timeout} s waiting for the lock {path!r}: {holder} kept it that "
            "long. Look for a hung process or task using this directory; nothing was written."
        )


def _bad_lock(key: str, what: str, path: str) -> CorruptDocumentError:
    return CorruptDocumentError(
        key,
        f"{what} stands where the key's lock file belongs (never followed or used); remove that "
        "entry of the lock directory",
        path,
    )


def _shown_key(name: str) -> str:
    """The key a file name stands for, or the name itself where that is unknown (hashed or foreign)."""
    try:
        return decode_key(name) or name
    except InvalidKeyError:
        return name
