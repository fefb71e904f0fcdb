"""Keeping a storage tidy: ``purge`` (expired documents, crash leftovers) and ``reencrypt``."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Sequence
from typing import Any, TextIO

import msgspec

from turnstate.cli.common import add_output_options, describe, open_storage
from turnstate.cli.console import CHECK_FAILED, OK, Refused, confirm, emit_json
from turnstate.cli.progress import Progress
from turnstate.cli.urls import STALE_TEMP_AFTER
from turnstate.crypto import FieldEncryption
from turnstate.errors import CorruptDocumentError, InvalidKeyError
from turnstate.keyring import DEFAULT_KEYS_ENV, KeyRing
from turnstate.reencrypt import ReencryptProgress, default_scope_of, reencrypt
from turnstate.storage.base import Storage
from turnstate.storage.file import LOCK_DIR, TEMP_PREFIX, FileStorage
from turnstate.storage.filenames import decode_key

# -- purge ---------------------------------------------------------------------------------------------


class _KeyInside(msgspec.Struct, forbid_unknown_fields=False):
    key: str


async def _removes_expired_itself(storage: Storage) -> bool:
    if storage.capabilities.native_ttl:
        return True
    settings_of = getattr(storage, "describe", None)
    if callable(settings_of):  # CosmosStorage: expiry is the container's setting
        settings = await settings_of()
        return bool(getattr(settings, "native_expiry", False))
    return False


def _file_entries(root: str, now: float) -> tuple[list[tuple[str, str]], list[str], list[str]]:
    """(key, file name) of every document file, stale temporary files, and lock files left alone."""
    documents: list[tuple[str, str]] = []
    temporary: list[str] = []
    with os.scandir(root) as entries:
        for entry in entries:
            name = entry.name
            if name.startswith(TEMP_PREFIX):
                try:
                    if now - entry.stat(follow_symlinks=False).st_mtime > STALE_TEMP_AFTER:
                        temporary.append(name)
                except FileNotFoundError:
                    pass
                continue
            if name.startswith("."):
                continue
            try:
                key = decode_key(name)
            except InvalidKeyError:
                continue  # not a document file: FileStorage leaves it alone too
            if key is None:  # a long key: it is kept inside the file
                try:
                    with open(entry.path, "rb") as handle:
                        key = msgspec.json.decode(handle.read(), type=_KeyInside).key
                except (OSError, msgspec.DecodeError):
                    key = name
            documents.append((key, name))
    locks_dir = os.path.join(root, LOCK_DIR)
    orphans: list[str] = []
    if os.path.isdir(locks_dir):
        orphans = sorted(n for n in os.listdir(locks_dir) if not os.path.lexists(os.path.join(root, n)))
    return documents, sorted(temporary), orphans


async def _expired_documents(
    storage: FileStorage, documents: list[tuple[str, str]], progress: Progress
) -> tuple[list[str], dict[str, str]]:
    live = {key async for key in storage.list_keys("")}
    expired: list[str] = []
    unreadable: dict[str, str] = {}
    for key, name in sorted(documents):
        if key not in live:
            try:
                if not await storage.read([key]):
                    expired.append(key)
            except (CorruptDocumentError, InvalidKeyError) as exc:
                unreadable[name] = str(exc)
        progress.advance(1, last=key)
    return expired, unreadable


async def purge(args: argparse.Namespace, out: TextIO) -> int:
    async with open_storage(args) as storage:
        purge_expired = getattr(storage, "purge_expired", None)
        if not callable(purge_expired):
            if await _removes_expired_itself(storage):
                message = f"nothing to purge: {describe(storage)} removes expired documents itself"
                if args.json:
                    emit_json({"removed": 0, "native_ttl": True}, out)
                else:
                    out.write(message + "\n")
                return OK
            raise Refused(
                f"{describe(storage)} has no purge_expired() and does not remove expired documents itself; "
                "expired documents read as absent (for Cosmos DB, turn on the container's TTL)"
            )
        if not isinstance(storage, FileStorage):
            if args.dry_run:
                raise Refused(f"--dry-run cannot tell what {describe(storage)} would remove; run without it")
            confirm(f"Purge expired documents from {describe(storage)}?", yes=args.yes, what="purge")
            removed = await purge_expired()
            _purged(args, out, {"removed": removed})
            return OK
        documents, temporary, orphans = _file_entries(storage.path, time.time())
        with Progress("checked", len(documents), every=args.progress_every, quiet=args.quiet) as progress:
            expired, unreadable = await _expired_documents(storage, documents, progress)
        if args.dry_run:
            _listing(args, out, expired, temporary, orphans, unreadable)
            return OK
        confirm(
            f"Remove {len(expired)} expired documents and {len(temporary)} stale temporary files from "
            f"{storage.path!r}?",
            yes=args.yes,
            what="purge",
        )
        before = storage.unreadable_skipped
        removed = await purge_expired()
        skipped = storage.unreadable_skipped - before
    _purged(args, out, {"removed": removed, "unreadable_skipped": skipped})
    return CHECK_FAILED if skipped else OK


def _listing(
    args: argparse.Namespace,
    out: TextIO,
    expired: Sequence[str],
    temporary: Sequence[str],
    orphans: Sequence[str],
    unreadable: dict[str, str],
) -> None:
    if args.json:
        for key in expired:
            emit_json({"would_remove": "expired document", "key": key}, out)
        for name in temporary:
            emit_json({"would_remove": "stale temporary file", "file": name}, out)
        for name in orphans:
            emit_json({"would_remove": "lock file without a document", "file": name}, out)
        for name, reason in unreadable.items():
            emit_json({"would_keep": "unreadable file", "file": name, "reason": reason}, out)
        emit_json({"dry_run": True, "would_remove": len(expired) + len(temporary)}, out)
        return
    for key in expired:
        out.write(f"would remove expired document {key!r}\n")
    for name in temporary:
        out.write(f"would remove stale temporary file {name!r}\n")
    for name in orphans:
        out.write(f"would remove lock file {name!r} (its document is gone)\n")
    for name, reason in unreadable.items():
        out.write(f"would keep unreadable file {name!r}: {reason}\n")
    out.write(
        f"dry run: would remove {len(expired)} expired documents and {len(temporary)} stale temporary "
        f"files; nothing was removed\n"
    )


def _purged(args: argparse.Namespace, out: TextIO, summary: dict[str, Any]) -> None:
    if args.json:
        emit_json(summary, out)
        return
    line = f"removed {summary['removed']} expired documents and crash leftovers"
    if summary.get("unreadable_skipped"):
        line += f"; left {summary['unreadable_skipped']} unreadable files in place (see the warnings)"
    out.write(line + "\n")


# -- reencrypt -----------------------------------------------------------------------------------------


def _ttls(pairs: Sequence[str]) -> dict[str, float]:
    ttls: dict[str, float] = {}
    for pair in pairs:
        scope, sep, seconds = pair.partition("=")
        try:
            value = float(seconds)
        except ValueError:
            value = -1.0
        if not sep or not scope or not value > 0:
            raise Refused(f"--ttl takes SCOPE=SECONDS with SECONDS > 0, got {pair!r}")
        ttls[scope] = value
    return ttls


async def reencrypt_command(args: argparse.Namespace, out: TextIO) -> int:
    ttls = _ttls(args.ttl)
    # each document is read once, so remembering plaintext would only hold memory
    encryption = FieldEncryption(
        args.encrypt,
        KeyRing.from_env(args.keys_env),
        allow_plaintext=args.migrate_plaintext,
        decrypted_cache=0,
    )
    bar: list[Progress] = []

    def progress(p: ReencryptProgress) -> None:
        if not bar:
            bar.append(Progress("re-encrypted", p.total, every=args.progress_every, quiet=args.quiet))
        bar[0].advance(p.done - bar[0].done, last=p.last_key)

    async with open_storage(args) as storage:
        try:
            report = await reencrypt(
                storage,
                encryption,
                ttl_of=lambda key: ttls.get(default_scope_of(key)),
                prefix=args.prefix,
                progress=progress,
                resume_after=args.resume_after,
            )
        except (Exception, asyncio.CancelledError) as exc:
            if bar and bar[0].last is not None:
                bar[0].close()
                sys.stderr.write(f"stopped: {exc}. Resume with --resume-after {bar[0].last!r}\n")
            raise
        finally:
            if bar:
                bar[0].close()
    if args.json:
        emit_json(
            {
                "scanned": report.scanned,
                "rewritten": report.rewritten,
                "already_current": report.already_current,
                "skipped": report.skipped,
                "failed": report.failed,
                "failures": report.failures,
                "primary": encryption.keys.primary,
            },
            out,
        )
    else:
        out.write(
            f"scanned {report.scanned}: rewritten {report.rewritten}, already under "
            f"{encryption.keys.primary!r} {report.already_current}, skipped {report.skipped}, "
            f"failed {report.failed}\n"
        )
        for key, reason in sorted(report.failures.items()):
            out.write(f"failed {key!r}: {reason}\n")
    return CHECK_FAILED if report.failed else OK


def add_parsers(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], common: list[argparse.ArgumentParser]
) -> None:
    p = commands.add_parser(
        "purge",
        parents=common,
        help="remove expired documents and crash leftovers (FileStorage)",
        description="Remove expired documents, temporary files left by crashes (older than "
        f"{STALE_TEMP_AFTER:.0f} s) and lock files without a document. Storages that expire documents "
        "themselves (Redis; Cosmos DB with TTL on) have nothing to purge. Run with --dry-run first to "
        "list what would go.",
    )
    p.add_argument("--dry-run", action="store_true", help="list what would be removed; remove nothing")
    p.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    add_output_options(p, progress=True)
    p.set_defaults(run=purge)

    p = commands.add_parser(
        "reencrypt",
        parents=common,
        help="re-encrypt stored documents under the primary key",
        description="Rewrite every document whose encrypted fields are not under the primary key of the "
        "ring in $TURNSTATE_KEYS (after promoting a new key, or turning encryption on for existing data "
        "with --migrate-plaintext). Each document keeps its expiry unless --ttl names its scope. Keys "
        "are handled in sorted order; an interrupted run resumes with --resume-after.",
    )
    p.add_argument("--encrypt", metavar="PATH", action="append", required=True, help="an encrypted path")
    p.add_argument("--keys-env", default=DEFAULT_KEYS_ENV, help="the environment variable with the keys")
    p.add_argument(
        "--ttl",
        metavar="SCOPE=SECONDS",
        action="append",
        default=[],
        help="TTL to write this scope's documents with; without it each document keeps its expiry",
    )
    p.add_argument("--prefix", default="", help="only keys starting with this")
    p.add_argument("--resume-after", metavar="KEY", help="skip keys up to and including this one")
    p.add_argument("--migrate-plaintext", action="store_true", help="encrypt plaintext found at the paths")
    add_output_options(p, progress=True)
    p.set_defaults(run=reencrypt_command)
