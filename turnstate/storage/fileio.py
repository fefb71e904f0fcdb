"""File operations of a state directory that never follow a link, never block, and map OSError once.

Documents are opened without following symbolic links and without blocking, and anything that is not a
regular file (a FIFO, a device, a socket, a directory, a link) is refused with a typed error naming the
key; a document file is read up to :data:`~turnstate.storage.fileformat.MAX_DOCUMENT_BYTES`. New
contents go to a temporary file, fsynced if asked, for the caller to rename into place.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Mapping

from turnstate.errors import CorruptDocumentError, StorageError, StorageUnavailableError
from turnstate.storage.fileformat import MAX_DOCUMENT_BYTES

TEMP_PREFIX = ".tmp-"
"""The name prefix of temporary files in the state directory."""

# O_NONBLOCK: opening a FIFO (or a device) must not wait for a writer; it is refused right after by fstat.
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def read_document_file(key: str, path: str) -> bytes | None:
    """The file's bytes, None if there is none; never follows a link, blocks, or reads past the limit.

    CorruptDocumentError naming ``key`` for something that is not a regular file or is too large;
    StorageUnavailableError for any other failure.
    """
    try:
        fd = os.open(path, _READ_FLAGS)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise CorruptDocumentError(key, _refused("a symbolic link"), path) from None
        if exc.errno == errno.ENXIO:
            raise CorruptDocumentError(key, _refused("a socket or device"), path) from None
        raise unavailable(f"read the document for {key!r}", path, exc) from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise CorruptDocumentError(key, _refused(not_a_file(info.st_mode)), path)
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
        raise unavailable(f"read the document for {key!r}", path, exc) from exc
    finally:
        os.close(fd)


def write_temp(directory_prefix: str, data: bytes, *, fsync: bool) -> str:
    """Write ``data`` to a new temporary file (owner-only) in the directory; return its path.

    ``directory_prefix`` is the directory's path ending in a separator. OSError propagates; nothing is
    left behind then.
    """
    path = directory_prefix + TEMP_PREFIX + os.urandom(8).hex()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if fsync:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(path)
        raise
    os.close(fd)
    return path


def sync_directory(path: str) -> None:
    """fsync the directory itself, making the renames and unlinks in it durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def not_a_file(mode: int) -> str:
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


def unavailable(what: str, path: str, exc: OSError) -> StorageUnavailableError:
    """The error for an OSError while the file storage tried to ``what`` at ``path``."""
    code = errno.errorcode.get(exc.errno or 0, "?")
    return StorageUnavailableError(
        f"file storage could not {what} at {path!r}: {exc.strerror or exc} ({code}). "
        "Check free space, permissions and that the directory still exists."
    )


def partial_failure(what: str, path: str, exc: OSError, written: Mapping[str, str]) -> StorageError:
    """StorageUnavailableError if nothing was written yet, else a StorageError naming what was."""
    if not written:
        return unavailable(what, path, exc)
    code = errno.errorcode.get(exc.errno or 0, "?")
    done = ", ".join(repr(k) for k in written)
    return StorageError(
        f"file storage could not {what} at {path!r}: {exc.strerror or exc} ({code}), after this call "
        f"had already written {done}. Check free space and permissions."
    )


def _refused(what: str) -> str:
    return f"{what} stands where the document file belongs (never followed or read); remove it"
