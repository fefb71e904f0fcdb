"""Moving documents between storages: ``export`` to JSON lines, ``import`` from them, ``migrate``.

A JSON line holds one document: ``{"key": ..., "value": <the stored document>, "expires_at": ...}``
(``expires_at`` Unix seconds or null). The value is copied byte for byte. Writes are create-only, so a
document already present is never replaced (``import --overwrite`` aside); one found with identical bytes
counts as already copied, which makes a re-run after an interruption copy each document exactly once.
Each document keeps its expiry: it is written with the lifetime it has left.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO

import msgspec

from turnstate.cli.common import (
    BATCH,
    add_output_options,
    open_storage,
    scope_prefix,
    sorted_keys,
    stored_items,
)
from turnstate.cli.console import CHECK_FAILED, CONFLICT, OK, Refused, confirm, emit_json, exit_code
from turnstate.cli.legacy import migrate_from
from turnstate.cli.progress import Progress
from turnstate.cli.urls import opened
from turnstate.errors import PreconditionFailedError, TurnStateError
from turnstate.storage.base import ANY_ETAG, Storage, WriteItem

RESUME_HINT = "run the same command again to resume: documents already written are skipped"


class Line(msgspec.Struct, forbid_unknown_fields=True):
    key: str
    value: msgspec.Raw
    expires_at: float | None = None


_line_decoder = msgspec.json.Decoder(Line)
_line_encoder = msgspec.json.Encoder()
_raw_decoder = msgspec.json.Decoder(msgspec.Raw)


@dataclass
class Tally:
    """What a copy did, key by key."""

    written: int = 0
    identical: int = 0
    expired: int = 0
    conflicts: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {
            "written": self.written,
            "already_present": self.identical,
            "expired": self.expired,
            "conflicts": len(self.conflicts),
            "failed": len(self.failed),
        }


def lifetime(expires_at: float | None, now: float) -> float | None:
    """The ttl that keeps ``expires_at``: None for none, 0 or less when it has passed."""
    return None if expires_at is None else expires_at - now


async def write_batch(storage: Storage, items: dict[str, WriteItem], tally: Tally) -> None:
    """Write ``items``; a create-only one that fails is compared with what is there (identical: fine)."""
    if not items:
        return
    try:
        await storage.write(items)
    except PreconditionFailedError as exc:
        if storage.capabilities.atomic_batch:  # nothing was written: write the others again
            await write_batch(storage, {k: v for k, v in items.items() if k not in exc.keys}, tally)
        else:
            tally.written += len(items) - len(exc.keys)
        found = await storage.read(exc.keys)
        for key in exc.keys:
            there = found.get(key)
            if there is not None and there.value == items[key].value:
                tally.identical += 1
            else:
                tally.conflicts.append(key)
        return
    tally.written += len(items)


def _report(tally: Tally, out: TextIO) -> None:
    for key in tally.conflicts:
        out.write(f"conflict: {key!r} is already there with other content; it was left as it is\n")
    for key, reason in tally.failed.items():
        out.write(f"failed: {key!r}: {reason}\n")


@contextlib.contextmanager
def _resumable(tally: Tally) -> Iterator[None]:
    """A storage error that stops a copy says how far it got and how to resume."""
    try:
        yield
    except TurnStateError as exc:
        raise Refused(
            f"{exc} (stopped after writing {tally.written} documents; {RESUME_HINT})", code=exit_code(exc)
        ) from exc


# -- export --------------------------------------------------------------------------------------------


async def export(args: argparse.Namespace, out: TextIO) -> int:
    prefix = scope_prefix(args.prefix, args.scope)
    to_file = args.output not in (None, "-")
    summary_to = out if to_file else sys.stderr
    exported = gone = 0
    unreadable: dict[str, str] = {}
    async with open_storage(args) as storage:
        keys = await sorted_keys(storage, prefix, "exporting documents")
        # opened only now, so a storage that cannot be read leaves an existing file as it was
        with (
            open(args.output, "w", encoding="utf-8") if to_file else contextlib.nullcontext(out) as target,
            Progress("exported", len(keys), every=args.progress_every, quiet=args.quiet) as progress,
        ):
            async for batch in stored_items(storage, keys):
                lines: list[bytes] = []
                for key, item in batch:
                    if item is None:
                        gone += 1
                        continue
                    try:
                        raw = _raw_decoder.decode(item.value)
                    except msgspec.DecodeError as exc:
                        unreadable[key] = f"the stored value is not JSON ({exc})"
                        continue
                    lines.append(_line_encoder.encode(Line(key, raw, item.expires_at)))
                    exported += 1
                if lines:
                    target.write(b"\n".join(lines).decode() + "\n")
                progress.advance(len(batch), last=batch[-1][0])
            target.flush()
    summary = {"exported": exported, "gone": gone, "unreadable": len(unreadable)}
    if args.json:
        emit_json(summary, summary_to)
    else:
        _report(Tally(failed=unreadable), summary_to)
        summary_to.write(
            f"exported {exported} documents ({gone} gone meanwhile, {len(unreadable)} unreadable)\n"
        )
    return CHECK_FAILED if unreadable else OK


# -- import --------------------------------------------------------------------------------------------


def _lines(path: str) -> tuple[Iterator[tuple[int, bytes]], int | None]:
    if path == "-":
        return ((n, line) for n, line in enumerate(sys.stdin.buffer, start=1)), None
    try:
        handle = open(path, "rb")  # noqa: SIM115  (closed when the generator finishes)
    except OSError as exc:
        raise Refused(f"cannot open {path!r}: {exc.strerror}") from exc
    total: int | None = None
    if os.path.isfile(path):
        total = sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))
        handle.seek(0)

    def lines() -> Iterator[tuple[int, bytes]]:
        with handle:
            yield from enumerate(handle, start=1)

    return lines(), total


def _parse(path: str, number: int, text: bytes) -> Line:
    try:
        line = _line_decoder.decode(text)
    except msgspec.DecodeError as exc:
        raise Refused(
            f"{path!r} line {number}: not an export line ({exc}); lines before it were imported, "
            "fix the file and import it again (present documents are skipped)"
        ) from exc
    if not line.key or not bytes(line.value).startswith(b"{"):
        raise Refused(f"{path!r} line {number} (key {line.key!r}): the value must be a JSON object")
    return line


async def import_(args: argparse.Namespace, out: TextIO) -> int:
    if args.overwrite:
        confirm(
            f"Replace documents already in the storage with those in {args.path!r}?",
            yes=args.yes,
            what="import --overwrite",
        )
    lines, total = _lines(args.path)
    tally = Tally()
    if_match = ANY_ETAG if args.overwrite else None
    async with open_storage(args, create=True) as storage:
        with (
            Progress("imported", total, every=args.progress_every, quiet=args.quiet) as progress,
            _resumable(tally),
        ):
            pending: dict[str, WriteItem] = {}
            seen = 0
            for number, text in lines:
                if not text.strip():
                    continue
                line = _parse(args.path, number, text)
                seen += 1
                ttl = lifetime(line.expires_at, time.time())
                if ttl is not None and ttl <= 0:
                    tally.expired += 1
                else:
                    if line.key in pending:
                        await write_batch(storage, pending, tally)
                        pending = {}
                    pending[line.key] = WriteItem(bytes(line.value), if_match=if_match, ttl=ttl)
                if len(pending) >= BATCH:
                    await write_batch(storage, pending, tally)
                    pending = {}
                    progress.advance(seen - progress.done, last=line.key)
            await write_batch(storage, pending, tally)
            progress.advance(seen - progress.done)
    return _finish("imported", tally, args, out)


def _finish(verb: str, tally: Tally, args: argparse.Namespace, out: TextIO, **extra: Any) -> int:
    if args.json:
        emit_json({**tally.summary(), **extra}, out)
    else:
        _report(tally, sys.stderr)
        out.write(
            f"{verb} {tally.written}, already present {tally.identical}, expired {tally.expired}, "
            f"conflicts {len(tally.conflicts)}\n"
        )
    if tally.conflicts:
        return CONFLICT
    return CHECK_FAILED if tally.failed else OK


# -- migrate -------------------------------------------------------------------------------------------


async def _holds_any(storage: Storage) -> bool:
    async for _ in storage.list_keys(""):
        return True
    return False


async def migrate(args: argparse.Namespace, out: TextIO) -> int:
    if args.from_ != "turnstate":
        return await migrate_from(args, out)
    if args.source == args.destination:
        raise Refused(f"SRC and DST are the same storage ({args.source!r})")
    tally = Tally()
    expiry: dict[str, float | None] = {}
    async with (
        opened(args.source, option="SRC") as source,
        opened(args.destination, create=True, option="DST") as destination,
    ):
        keys = await sorted_keys(source, args.prefix, "migrating documents")
        if not destination.capabilities.list_keys:
            raise Refused(f"DST {args.destination!r} cannot list its keys, so the copy cannot be verified")
        if await _holds_any(destination):
            confirm(
                f"{args.destination!r} already holds documents; copy into it (documents already there are "
                "never replaced)?",
                yes=args.yes,
                what="migrate into a storage that is not empty",
            )
        with (
            Progress("copied", len(keys), every=args.progress_every, quiet=args.quiet) as progress,
            _resumable(tally),
        ):
            async for batch in stored_items(source, keys):
                now = time.time()
                items: dict[str, WriteItem] = {}
                for key, item in batch:
                    ttl = None if item is None else lifetime(item.expires_at, now)
                    if item is None or (ttl is not None and ttl <= 0):
                        tally.expired += 1
                        continue
                    expiry[key] = item.expires_at
                    items[key] = WriteItem(item.value, if_match=None, ttl=ttl)
                await write_batch(destination, items, tally)
                progress.advance(len(batch), last=batch[-1][0])
        present = {key async for key in destination.list_keys(args.prefix)}
    now = time.time()
    conflicted = set(tally.conflicts)
    missing = [
        key
        for key, expires_at in expiry.items()
        if key not in present and key not in conflicted and (expires_at is None or expires_at > now)
    ]
    expected = len(expiry) - len(conflicted)
    for key in missing:
        tally.failed[key] = "not in the destination after the copy"
    extra = {"source": len(keys), "verified": expected - len(missing)}
    code = _finish("copied", tally, args, out, **extra)
    if not args.json:
        verdict = "all present" if not missing else f"{len(missing)} MISSING"
        out.write(
            f"verified: {expected - len(missing)} of {expected} documents in the destination, {verdict}\n"
        )
    return code


def add_parsers(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], common: list[argparse.ArgumentParser]
) -> None:
    p = commands.add_parser(
        "export",
        parents=common,
        help="write documents as JSON lines (to stdout or -o FILE)",
        description="Write every document under PREFIX as one JSON line: key, value (the stored document, "
        "byte for byte) and expires_at. Progress goes to stderr.",
    )
    p.add_argument("prefix", nargs="?", default="", metavar="PREFIX", help="only keys starting with this")
    p.add_argument("--scope", metavar="NAME", help="only this scope's documents")
    p.add_argument("-o", "--output", metavar="FILE", help="write here instead of stdout")
    add_output_options(p, progress=True)
    p.set_defaults(run=export)

    p = commands.add_parser(
        "import",
        parents=common,
        help="write documents from a JSON lines export",
        description="Write each document of FILE ('-' for stdin), keeping its expiry as the time it has "
        "left (documents already expired are skipped). Create-only: a document already present is kept "
        "(identical bytes count as already imported; other content is a conflict, exit 3) unless "
        "--overwrite.",
    )
    p.add_argument("path", metavar="FILE", help="an export file, or - for stdin")
    p.add_argument("--overwrite", action="store_true", help="replace documents that are already there")
    p.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    add_output_options(p, progress=True)
    p.set_defaults(run=import_, resume_hint=RESUME_HINT)

    p = commands.add_parser(
        "migrate",
        help="copy every document from one storage to another",
        description="Copy every document from SRC to DST (storage URLs), create-only and keeping each "
        "expiry. Resumable: run it again after an interruption and each document is copied exactly "
        "once (those already in DST with identical bytes are skipped). Verifies at the end that DST "
        "holds every document copied.",
    )
    p.add_argument("source", metavar="SRC", help="the storage to copy from (with --from: a JSON file)")
    p.add_argument("destination", metavar="DST", help="the storage to copy into (created if needed)")
    p.add_argument(
        "--from",
        dest="from_",
        choices=("turnstate", "botbuilder", "agents"),
        default="turnstate",
        help="what SRC holds: a turnstate storage (default), or a Bot Framework SDK / Microsoft 365 "
        "Agents SDK bot's state as a JSON file (a MemoryStorage dump, or a Cosmos DB container's items)",
    )
    p.add_argument("--bot", help="with --from agents: the agent's id, as its activities carry it")
    p.add_argument("--tenant", help="with --from agents: the tenant id its activities carry, if any")
    p.add_argument("--prefix", default="", help="only keys starting with this")
    p.add_argument("-y", "--yes", action="store_true", help="do not ask before copying into a non-empty DST")
    add_output_options(p, progress=True)
    p.set_defaults(run=migrate, resume_hint=RESUME_HINT)
