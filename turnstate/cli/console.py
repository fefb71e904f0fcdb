"""What every command shares: exit codes, one-line refusals, confirmation, and how times are shown."""

from __future__ import annotations

import datetime
import sys
from typing import Any, TextIO

import msgspec

OK = 0
CHECK_FAILED = 1
USAGE = 2
CONFLICT = 3
UNAVAILABLE = 4

EXIT_CODES = """exit codes:
  0  done
  1  a check failed, or some documents could not be handled (each is named)
  2  usage or configuration error (bad storage URL, missing keys, no confirmation)
  3  precondition failed or conflict (stale ETag, document already present)
  4  storage unavailable"""


class Refused(Exception):
    """The command stops with a one-line message and the exit code given."""

    def __init__(self, message: str, code: int = USAGE) -> None:
        super().__init__(message)
        self.code = code


def exit_code(exc: BaseException) -> int:
    """The exit status for an error that ends a command."""
    from turnstate.errors import (
        ConflictError,
        InvalidKeyError,
        KeyRingError,
        StorageUnavailableError,
        UnsupportedStorageError,
    )

    if isinstance(exc, Refused):
        return exc.code
    if isinstance(exc, KeyRingError | UnsupportedStorageError | InvalidKeyError):
        return USAGE
    if isinstance(exc, ConflictError):
        return CONFLICT
    if isinstance(exc, StorageUnavailableError):
        return UNAVAILABLE
    return CHECK_FAILED


def confirm(question: str, *, yes: bool, what: str) -> None:
    """Ask ``question`` on the terminal unless ``yes``; refuse without a terminal or without a yes."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise Refused(f"{what} needs confirmation and there is no terminal to ask on; pass --yes to confirm")
    sys.stderr.write(f"{question} [y/N] ")
    sys.stderr.flush()
    answer = sys.stdin.readline().strip().lower()
    if answer not in ("y", "yes"):
        raise Refused(f"{what} was not confirmed; nothing was changed")


_json = msgspec.json.Encoder()


def emit_json(record: Any, out: TextIO) -> None:
    """Write one JSON value on its own line."""
    out.write(_json.encode(record).decode())
    out.write("\n")
    out.flush()


def timestamp(epoch: float | None) -> str:
    """An expiry as UTC ISO 8601, or "never"."""
    if epoch is None:
        return "never"
    moment = datetime.datetime.fromtimestamp(epoch, datetime.UTC)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def duration(seconds: float) -> str:
    """A span as the two largest units: ``"2d 3h"``, ``"5m 12s"``, ``"42s"``."""
    if seconds <= 0:
        return "expired"
    whole = int(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [(days, "d"), (hours, "h"), (minutes, "m"), (secs, "s")]
    shown = [f"{n}{unit}" for n, unit in parts if n]
    return " ".join(shown[:2]) if shown else "0s"
