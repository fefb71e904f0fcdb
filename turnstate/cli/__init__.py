"""The ``turnstate`` command: operator tools over any storage, named by URL.

``turnstate ls``, ``show``, ``rm``, ``export``, ``import``, ``migrate``, ``purge``, ``reencrypt``,
``doctor`` and ``bench``; ``turnstate COMMAND --help`` tells more. The storage is ``--storage URL`` (or
``$TURNSTATE_STORAGE``): ``file:./bot-state``, ``redis://host:6379?prefix=bot:``,
``cosmos://account.documents.azure.com:443/db/container`` or ``MODULE:FUNCTION`` for a storage your code
builds. The key ring comes from ``$TURNSTATE_KEYS``. Errors are one line on stderr; the exit status says
what kind (see :data:`turnstate.cli.console.EXIT_CODES`).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import textwrap
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import TextIO

from turnstate.cli import bench, doctor, inspect, maintenance, transfer
from turnstate.cli.common import STORAGE_ENV, add_storage_options
from turnstate.cli.console import CHECK_FAILED, EXIT_CODES, Refused, exit_code
from turnstate.cli.urls import COSMOS_KEY_ENV
from turnstate.errors import TurnStateError
from turnstate.keyring import DEFAULT_KEYS_ENV

__all__ = ["build_parser", "main"]

_ENVIRONMENT = f"""environment:
  {STORAGE_ENV:<22} the storage URL when --storage is not given
  {DEFAULT_KEYS_ENV:<22} the key ring, 'kid:base64key,...' with the primary key first
  {COSMOS_KEY_ENV:<22} the Cosmos DB account key (else an azure-identity credential)"""

_DESCRIPTION = """Operate on turnstate's stored documents.

storage URLs (--storage, or $TURNSTATE_STORAGE):
  file:./bot-state                         a FileStorage directory (file:///abs/dir; ?fsync=0)
  redis://HOST:6379/0?prefix=turnstate:    Redis (rediss:// for TLS, ?cluster=1 for a cluster)
  cosmos://HOST:443/DATABASE/CONTAINER     Azure Cosmos DB over HTTPS (?verify=0, ?ca=FILE)
  blob:CONTAINER                           Azure Blob Storage ($TURNSTATE_BLOB_CONNECTION_STRING)
  mybot.state:make_storage                 a function (sync or async) that returns the storage"""


def _version() -> str:
    try:
        return version("turnstate")
    except PackageNotFoundError:
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    """The parser of the whole command line."""
    parser = argparse.ArgumentParser(
        prog="turnstate",
        description=_DESCRIPTION,
        epilog=f"{EXIT_CODES}\n\n{_ENVIRONMENT}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"turnstate {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    storage = argparse.ArgumentParser(add_help=False)
    add_storage_options(storage)
    for module in (inspect, transfer, maintenance, doctor):
        module.add_parsers(commands, [storage])
    bench.add_parsers(commands, [])
    for sub in commands.choices.values():
        sub.formatter_class = argparse.RawDescriptionHelpFormatter
        sub.description = textwrap.fill(sub.description or "", 78)
        sub.epilog = f"{EXIT_CODES}\n\n{_ENVIRONMENT}"
    return parser


def _quiet_logging() -> None:
    """Warnings (an unreadable file skipped, ...) as one line each; the SDKs' retry chatter left out, since
    a failure that matters ends the command with its own error line."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s", stream=sys.stderr)
    for noisy in ("azure", "redis"):
        logging.getLogger(noisy).setLevel(logging.ERROR)


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run one command; return the process exit status."""
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    _quiet_logging()
    failure: BaseException
    try:
        code: int = asyncio.run(args.run(args, sys.stdout if out is None else out))
        return code
    except KeyboardInterrupt:
        hint = getattr(args, "resume_hint", None)
        sys.stderr.write(f"interrupted{'; ' + hint if hint else ''}\n")
        return 130
    except BrokenPipeError:
        return CHECK_FAILED
    except (Refused, TurnStateError) as exc:
        failure, message = exc, str(exc)
    except Exception as exc:  # a storage's own error that it did not translate: still one line
        failure, message = exc, f"{type(exc).__name__}: {exc}"
    text = " ".join(message.split("\n"))
    sys.stderr.write(f"error: {text}\n")
    return exit_code(failure)
