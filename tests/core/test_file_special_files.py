"""FileStorage with something other than a regular file where a document or lock file belongs.

A FIFO, a link to a device, a dangling link or an oversized file is refused with CorruptDocumentError naming
the key and the file: nothing blocks, nothing outside the directory is opened or created, listing and
purging skip it, and deleting the key removes it.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest

from turnstate.errors import CorruptDocumentError, InvalidItemError
from turnstate.storage.base import WriteItem
from turnstate.storage.file import LOCK_DIR, MAX_DOCUMENT_BYTES, FileStorage

T = TypeVar("T")

# Only a guard against a hang taking the whole run down with it; nothing here is a timing assertion.
HANG_GUARD = 60.0


async def guarded(call: Awaitable[T]) -> T:
    return await asyncio.wait_for(call, HANG_GUARD)


def everything_under(root: Path) -> set[Path]:
    return {Path(dirpath) / name for dirpath, dirs, files in os.walk(root) for name in [*dirs, *files]}


def make_fifo(path: Path, outside: Path) -> None:
    os.mkfifo(path)


def link_to_device(path: Path, outside: Path) -> None:
    os.symlink("/dev/zero", path)


def dangling_link(path: Path, outside: Path) -> None:
    os.symlink(outside / "created-through-the-link", path)


def link_to_a_document(path: Path, outside: Path) -> None:
    target = outside / "looks-like-ours"
    target.write_bytes(b'{"format":1,"key":"k","etag":"e","expires_at":null,"value":{"n":1}}')
    os.symlink(target, path)


def oversized(path: Path, outside: Path) -> None:
    with open(path, "wb") as file:
        file.truncate(MAX_DOCUMENT_BYTES + 1)  # sparse: no disk or memory used


SPECIAL: dict[str, tuple[Callable[[Path, Path], None], str]] = {
    "fifo": (make_fifo, "named pipe"),
    "link-to-dev-zero": (link_to_device, "symbolic link"),
    "dangling-link": (dangling_link, "symbolic link"),
    "link-to-a-document": (link_to_a_document, "symbolic link"),
    "oversized": (oversized, "byte limit"),
}


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    directory = tmp_path / "outside"
    directory.mkdir()
    return directory


@pytest.mark.parametrize("kind", SPECIAL)
async def test_special_file_in_place_of_a_document_is_refused_without_blocking(
    tmp_path: Path, outside: Path, kind: str
) -> None:
    make, reason = SPECIAL[kind]
    storage = FileStorage(tmp_path / "state")
    await storage.write({"neighbour": WriteItem(b'{"n":1}')})
    path = Path(storage.path_for("k"))
    make(path, outside)
    outside_before = everything_under(outside)
    attempts: list[Callable[[], Awaitable[object]]] = [
        lambda: storage.read(["k", "neighbour"]),
        lambda: storage.write({"k": WriteItem(b"{}")}),
        lambda: storage.write({"k": WriteItem(b"{}", if_match=None)}),
    ]
    for attempt in attempts:
        with pytest.raises(CorruptDocumentError, match=reason) as info:
            await guarded(attempt())
        assert info.value.key == "k"
        assert str(path) in str(info.value)
    # Listing and purging go on past it, and count it.
    assert [k async for k in storage.list_keys()] == ["neighbour"]
    assert await guarded(storage.purge_expired()) == 0
    assert storage.unreadable_skipped == 2
    assert everything_under(outside) == outside_before
    # Deleting the key removes the entry itself (never what a link points to), and the key works again.
    await guarded(storage.delete(["k"]))
    assert not os.path.lexists(path)
    assert everything_under(outside) == outside_before
    await storage.write({"k": WriteItem(b'{"n":2}', if_match=None)})
    assert (await storage.read(["k"]))["k"].value == b'{"n":2}'


@pytest.mark.parametrize("kind", ["dangling-link", "fifo", "link-to-dev-zero"])
async def test_special_file_in_place_of_a_lock_file_is_refused_and_creates_nothing_outside(
    tmp_path: Path, outside: Path, kind: str
) -> None:
    storage = FileStorage(tmp_path / "state")
    await storage.write({"neighbour": WriteItem(b'{"n":1}')})
    lock = Path(storage.path).joinpath(LOCK_DIR, Path(storage.path_for("k")).name)
    SPECIAL[kind][0](lock, outside)
    attempts: list[Callable[[], Awaitable[object]]] = [
        lambda: storage.write({"k": WriteItem(b"{}")}),
        lambda: storage.write({"k": WriteItem(b"{}", if_match=None), "other": WriteItem(b"{}")}),
        lambda: storage.delete(["k"]),
    ]
    for attempt in attempts:
        with pytest.raises(CorruptDocumentError, match="lock file") as info:
            await guarded(attempt())
        assert info.value.key == "k"
        assert str(lock) in str(info.value)
    assert everything_under(outside) == set()
    assert await storage.read(["k", "other"]) == {}
    # The purge of orphaned lock files skips it (and counts it) instead of stopping.
    assert await guarded(storage.purge_expired()) == 0
    assert storage.unreadable_skipped == 1
    assert os.path.lexists(lock)
    # The fix the message names: remove the entry; then the key works.
    os.unlink(lock)
    await storage.write({"k": WriteItem(b'{"n":2}')})
    assert (await storage.read(["k", "neighbour"]))["k"].value == b'{"n":2}'
    assert everything_under(outside) == set()


async def test_value_over_the_document_limit_is_refused_and_writes_nothing(tmp_path: Path) -> None:
    storage = FileStorage(tmp_path / "state")
    value = b'{"blob":"' + b"x" * MAX_DOCUMENT_BYTES + b'"}'
    with pytest.raises(InvalidItemError, match="byte limit") as info:
        await storage.write({"small": WriteItem(b"{}"), "big": WriteItem(value)})
    assert info.value.key == "big"
    assert await storage.read(["small", "big"]) == {}


async def test_value_nested_too_deeply_to_read_back_is_refused(tmp_path: Path) -> None:
    storage = FileStorage(tmp_path / "state")
    value = b'{"a":' + b"[" * 200_000 + b"]" * 200_000 + b"}"
    with pytest.raises(InvalidItemError, match="nested too deeply") as info:
        await storage.write({"k": WriteItem(value)})
    assert info.value.key == "k"
    assert await storage.read(["k"]) == {}
