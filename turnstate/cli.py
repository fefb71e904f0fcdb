"""Command-line tools for operators.

``python -m turnstate reencrypt`` rewrites every stored document whose encrypted fields are not under the
primary key (after a key rotation, or after turning encryption on for existing data), showing progress and
printing how to resume if it is interrupted::

    TURNSTATE_KEYS="k2:<new key>,k1:<old key>" python -m turnstate reencrypt \\
        --file ./bot-state --encrypt user.email --encrypt user.phone --ttl conversation=604800

The storage is a FileStorage directory (``--file``) or any storage your code builds: ``--storage
mybot.state:make_storage`` names a function (sync or async, no arguments) that returns one. A directory
that does not exist, or a storage function that cannot be found, is refused with a one-line error (exit
status 2): nothing is created. Each document keeps its expiry unless ``--ttl`` names its scope.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import inspect
import os
import sys
import time
from collections.abc import Sequence
from typing import TextIO

from turnstate.crypto import FieldEncryption
from turnstate.errors import TurnStateError
from turnstate.keyring import DEFAULT_KEYS_ENV, KeyRing
from turnstate.reencrypt import ReencryptProgress, default_scope_of, reencrypt
from turnstate.storage.base import Storage


class _Refused(Exception):
    """The command cannot run as given; the message says why, on one line."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m turnstate", description="turnstate operator commands")
    commands = parser.add_subparsers(dest="command", required=True)
    re = commands.add_parser(
        "reencrypt",
        help="re-encrypt stored documents under the primary key",
        description="Rewrite every document whose encrypted fields are not under the primary key.",
    )
    where = re.add_mutually_exclusive_group(required=True)
    where.add_argument("--file", metavar="DIR", help="a FileStorage directory")
    where.add_argument("--storage", metavar="MODULE:FUNCTION", help="a function that returns the storage")
    re.add_argument("--encrypt", metavar="PATH", action="append", required=True, help="an encrypted path")
    re.add_argument("--keys-env", default=DEFAULT_KEYS_ENV, help="the environment variable with the keys")
    re.add_argument(
        "--ttl",
        metavar="SCOPE=SECONDS",
        action="append",
        default=[],
        help="TTL to write this scope's documents with; without it each document keeps its expiry",
    )
    re.add_argument("--prefix", default="", help="only keys starting with this")
    re.add_argument("--resume-after", metavar="KEY", help="skip keys up to and including this one")
    re.add_argument("--migrate-plaintext", action="store_true", help="encrypt plaintext found at the paths")
    return parser


def _ttls(pairs: Sequence[str]) -> dict[str, float]:
    ttls: dict[str, float] = {}
    for pair in pairs:
        scope, sep, seconds = pair.partition("=")
        try:
            value = float(seconds)
        except ValueError:
            value = -1.0
        if not sep or not scope or not value > 0:
            raise _Refused(f"--ttl takes SCOPE=SECONDS with SECONDS > 0, got {pair!r}")
        ttls[scope] = value
    return ttls


async def _open(args: argparse.Namespace) -> Storage:
    if args.file:
        from turnstate.storage.file import FileStorage

        if not os.path.isdir(args.file):
            what = "is not a directory" if os.path.lexists(args.file) else "does not exist"
            raise _Refused(
                f"--file {args.file!r} {what}; give the FileStorage directory the bot writes to "
                "(nothing was created)"
            )
        return FileStorage(args.file)
    spec = args.storage
    module_name, sep, function_name = spec.partition(":")
    if not sep or not module_name or not function_name:
        raise _Refused(f"--storage takes MODULE:FUNCTION, got {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise _Refused(f"--storage {spec!r}: cannot import {module_name!r} ({exc}); check the name") from exc
    factory = getattr(module, function_name, None)
    if not callable(factory):
        found = "a non-callable" if hasattr(module, function_name) else "no"
        raise _Refused(f"--storage {spec!r}: module {module_name!r} has {found} attribute {function_name!r}")
    storage = factory()
    if inspect.isawaitable(storage):
        storage = await storage
    if not isinstance(storage, Storage):
        raise _Refused(f"--storage {spec!r} returned {type(storage).__name__}, not a turnstate Storage")
    return storage


async def _reencrypt(args: argparse.Namespace, out: TextIO) -> int:
    ttls = _ttls(args.ttl)
    # each document is read once, so remembering plaintext would only hold memory
    encryption = FieldEncryption(
        args.encrypt,
        KeyRing.from_env(args.keys_env),
        allow_plaintext=args.migrate_plaintext,
        decrypted_cache=0,
    )
    storage = await _open(args)
    last: list[str] = []
    shown = [0.0]

    def progress(p: ReencryptProgress) -> None:
        last[:] = [p.last_key]
        now = time.monotonic()
        if p.done == p.total or now - shown[0] >= 1.0:
            shown[0] = now
            print(
                f"{p.done}/{p.total} keys ({100 * p.done // max(p.total, 1)}%), last: {p.last_key}", file=out
            )

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
        if last:
            print(f"stopped: {exc!r}. Resume with --resume-after {last[0]!r}", file=out)
        raise
    finally:
        await storage.aclose()
    print(
        f"scanned {report.scanned}: rewritten {report.rewritten}, already under {encryption.keys.primary!r} "
        f"{report.already_current}, skipped {report.skipped}, failed {report.failed}",
        file=out,
    )
    for key, reason in sorted(report.failures.items()):
        print(f"failed {key!r}: {reason}", file=out)
    return 1 if report.failed else 0


def main(argv: Sequence[str] | None = None, out: TextIO = sys.stdout) -> int:
    """Run a command; returns the process exit status."""
    args = _parser().parse_args(argv)
    try:
        return asyncio.run(_reencrypt(args, out))
    except (TurnStateError, _Refused) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
