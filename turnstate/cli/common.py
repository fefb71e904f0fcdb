"""Options and storage walks that several commands share."""

from __future__ import annotations

import argparse
import os
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from turnstate.cli.console import Refused
from turnstate.cli.progress import DEFAULT_EVERY
from turnstate.cli.urls import FORMS, file_storage, opened
from turnstate.errors import UnsupportedStorageError
from turnstate.storage.base import Storage, StoredItem

STORAGE_ENV = "TURNSTATE_STORAGE"
BATCH = 100


def add_storage_options(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "-s",
        "--storage",
        metavar="URL",
        help=f"the storage URL: file:DIR, redis://..., cosmos://... or MODULE:FUNCTION (see `turnstate "
        f"--help`; default ${STORAGE_ENV})",
    )
    where.add_argument("--file", metavar="DIR", help="a FileStorage directory (same as --storage file:DIR)")


def add_output_options(parser: argparse.ArgumentParser, *, progress: bool = False) -> None:
    parser.add_argument("--json", action="store_true", help="machine-readable output, one JSON value a line")
    if progress:
        parser.add_argument(
            "--progress-every",
            type=int,
            default=DEFAULT_EVERY,
            metavar="N",
            help=f"without a terminal, print a progress line every N documents (default {DEFAULT_EVERY})",
        )
        parser.add_argument("-q", "--quiet", action="store_true", help="no progress output")


def open_storage(args: argparse.Namespace, *, create: bool = False) -> AbstractAsyncContextManager[Storage]:
    """The storage named by --file, --storage or $TURNSTATE_STORAGE."""
    if args.file is not None:
        return _file(args.file, create)
    spec = args.storage if args.storage is not None else os.environ.get(STORAGE_ENV)
    if spec is None:
        raise Refused(f"name the storage with --storage URL (or set {STORAGE_ENV}); URLs are {FORMS}")
    option = "--storage" if args.storage is not None else STORAGE_ENV
    return opened(spec, create=create, option=option)


@asynccontextmanager
async def _file(directory: str, create: bool) -> AsyncIterator[Storage]:
    async with file_storage(directory, create=create, fsync=True, what=f"--file {directory!r}") as storage:
        yield storage


async def sorted_keys(storage: Storage, prefix: str, operation: str) -> list[str]:
    """Every live key starting with ``prefix``, sorted (so runs are repeatable and resumable)."""
    if not storage.capabilities.list_keys:
        raise UnsupportedStorageError(type(storage).__name__, "list_keys", operation)
    return sorted({key async for key in storage.list_keys(prefix)})


async def stored_items(
    storage: Storage, keys: Sequence[str], batch: int = BATCH
) -> AsyncIterator[list[tuple[str, StoredItem | None]]]:
    """The items at ``keys``, read ``batch`` at a time, in order; None for one gone meanwhile."""
    for start in range(0, len(keys), batch):
        chunk = keys[start : start + batch]
        found = await storage.read(chunk)
        yield [(key, found.get(key)) for key in chunk]


def describe(storage: Storage) -> str:
    """A storage's name for messages (its repr, or its class and directory for FileStorage)."""
    path = getattr(storage, "path", None)
    if isinstance(path, str):
        return f"{type(storage).__name__}({path!r})"
    return repr(storage)


def scope_prefix(prefix: str | None, scope: str | None) -> str:
    if scope is not None:
        if prefix and not prefix.startswith(f"{scope}/"):
            raise Refused(f"prefix {prefix!r} is not in scope {scope!r}; give one or the other")
        return prefix or f"{scope}/"
    return prefix or ""
