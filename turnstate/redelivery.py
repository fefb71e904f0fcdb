"""The window of recent activities kept in each document (its ``recent`` field).

The window is one ASCII string of fixed-width records, oldest first: ``|`` + a 12-character digest of the
activity id (48 bits of BLAKE2b, in hex) + the commit time in base-36 seconds (6 characters) + one
character saying how far the activity got:

* ``-``: in progress. A checkpoint (``state.save()``) wrote this document; the turn had not ended.
* ``1``-``9``, ``a``-``z``: done. The activity's final commit wrote this document, and the activity is done
  in that many documents in all (base 36; 35 stands for 35 or more). A redelivery is a duplicate only
  when that many of the documents it loads hold a done record of it.
* ``*``: done, written by a release that did not count documents (its ``seen`` field, read as this).

An in-progress record is followed by a companion record (``|`` + 12 random hex characters + time + ``~``)
that names the delivery which wrote it, so a delivery can tell its own checkpoint from another's.

Records never contain ``|``, ``"`` or ``\\``, so checking an id is one substring search, adding one is a
concatenation, and trimming (by count, then age) is slicing. The engine keeps the window as the bytes
stored in the document and writes them back verbatim, so a long window costs no JSON work per turn.
Two ids in one window share a digest with a probability under 1e-13, so a genuine new activity is, in
practice, never taken for a redelivery.
"""

from __future__ import annotations

import os
import time
from binascii import hexlify
from hashlib import blake2b
from typing import NamedTuple

_RECORD = 20  # "|" + 12 digest characters + 6 time characters + 1 progress character
_DIGEST = 13  # length of "|" + digest
_STAMPED = 19  # length of a record before its progress character
_LEGACY_RECORD = 19  # a record of the earlier ``seen`` window: no progress character
_HASHER = blake2b(digest_size=6)
_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"

IN_PROGRESS = b"-"
"""The progress character of a checkpoint's record."""
DONE_UNCOUNTED = b"*"
"""The progress character of a done record that does not say in how many documents."""
COMPANION = b"~"
"""The progress character of the record naming the delivery that wrote the in-progress record before it."""
MAX_COUNT = 35


def _base36(n: int) -> bytes:
    out = ""
    while n:
        n, r = divmod(n, 36)
        out = _DIGITS[r] + out
    return out.rjust(6, "0")[-6:].encode("ascii")


def _stamp(record: bytes) -> int:
    try:
        return int(record[_DIGEST:_STAMPED], 36)
    except ValueError:
        return -1  # not a record this module wrote: it ages out first


_DONE_MARKS = tuple(digit.encode("ascii") for digit in _DIGITS)


def done_mark(documents: int) -> bytes:
    """The progress character of a done record for an activity done in ``documents`` (>= 1) documents."""
    return _DONE_MARKS[documents if documents <= MAX_COUNT else MAX_COUNT]


class Found(NamedTuple):
    """What a window says of one activity: its latest record's time and progress character, and for an
    in-progress record the companion naming the delivery that wrote it."""

    stamp: int
    mark: bytes
    delivery: bytes = b""

    @property
    def done(self) -> bool:
        return self.mark != IN_PROGRESS

    @property
    def documents(self) -> int | None:
        """In how many documents the activity is done, as this record says (None: not counted)."""
        if self.mark == IN_PROGRESS or self.mark == DONE_UNCOUNTED:
            return None
        return _DIGITS.find(self.mark.decode("ascii")) if self.mark.isalnum() else None


class SeenWindow:
    """Remembers the last ``size`` activity ids per document (at least), for up to ``max_age`` seconds."""

    __slots__ = ("_limit", "_stamp", "max_age", "size")

    def __init__(self, size: int = 32, max_age: float = 3600.0) -> None:
        if size < 1:
            raise ValueError(f"the redelivery window must hold at least 1 id, got {size!r}")
        if not max_age > 0:
            raise ValueError(f"the redelivery window's max age must be positive, got {max_age!r}")
        self.size = size
        self.max_age = max_age
        self._limit = (size + max(1, size // 4)) * _RECORD
        self._stamp = (0, _base36(0))  # the last second encoded, reused within that second

    @staticmethod
    def token(activity_id: str) -> bytes:
        """The ``|``-prefixed digest under which ``activity_id`` is recorded."""
        try:
            raw = activity_id.encode()
        except UnicodeEncodeError:  # a lone surrogate; the common case above skips the error handler's cost
            raw = activity_id.encode("utf-8", "surrogatepass")
        hasher = _HASHER.copy()  # cheaper than a new hasher, whose digest_size keyword costs more
        hasher.update(raw)
        return b"|" + hexlify(hasher.digest())

    @staticmethod
    def contains(seen: bytes, token: bytes) -> bool:
        """Whether the window ``seen`` holds any record of the activity with this ``token``."""
        # partition: a one-argument method, so nothing to parse, and a miss returns the window itself
        # uncopied. (find parses optional arguments; `in` first tries the token as an int, raising inside.)
        return seen.partition(token)[1] != b""

    @staticmethod
    def find(seen: bytes, token: bytes) -> Found | None:
        """The latest record of ``token`` in ``seen``, or None."""
        at = seen.rfind(token)
        if at < 0:
            return None
        record = seen[at : at + _RECORD]
        mark = record[_STAMPED:_RECORD] or DONE_UNCOUNTED
        if mark != IN_PROGRESS:
            return Found(_stamp(record), mark)
        companion = seen[at + _RECORD : at + 2 * _RECORD]
        return Found(_stamp(record), mark, companion if companion[_STAMPED:] == COMPANION else b"")

    @staticmethod
    def oldest(seen: bytes) -> int | None:
        """The time of the oldest record in ``seen`` (None for an empty window)."""
        return _stamp(seen[:_RECORD]) if seen else None

    @staticmethod
    def without(seen: bytes, token: bytes) -> bytes:
        """``seen`` with every record of ``token`` (and the companion of an in-progress one) removed."""
        while True:
            at = seen.find(token)
            if at < 0:
                return seen
            end = at + _RECORD
            if seen[end - 1 : end] == IN_PROGRESS and seen[end + _STAMPED : end + _RECORD] == COMPANION:
                end += _RECORD
            seen = seen[:at] + seen[end:]

    @staticmethod
    def delivery() -> bytes:
        """A new delivery's name: the digest part of its companion records."""
        return b"|" + hexlify(os.urandom(6))

    @staticmethod
    def from_legacy(seen: bytes) -> bytes:
        """A window of the earlier format (records without a progress character), as done records."""
        return b"".join(
            seen[i : i + _LEGACY_RECORD] + DONE_UNCOUNTED for i in range(0, len(seen), _LEGACY_RECORD)
        )

    def may_have_dropped(self, seen: bytes, since: int) -> bool:
        """Whether ``seen`` may have trimmed away a record made at ``since``: it is full and holds no
        older record."""
        oldest = self.oldest(seen)
        return oldest is not None and len(seen) >= self.size * _RECORD and oldest >= since

    def record(self, token: bytes, mark: bytes, now: float | None = None) -> bytes:
        """The record of ``token`` with progress character ``mark`` at ``now`` (default: the current time)."""
        stamp = int(time.time() if now is None else now)
        if self._stamp[0] != stamp:
            self._stamp = (stamp, _base36(stamp))
        return token + self._stamp[1] + mark

    def progress(self, token: bytes, delivery: bytes, now: float | None = None) -> bytes:
        """The in-progress record of ``token`` and its companion naming ``delivery``."""
        record = self.record(token, IN_PROGRESS, now)
        return record + delivery + record[_DIGEST:_STAMPED] + COMPANION

    def remember(self, seen: bytes, record: bytes) -> bytes:
        """The window ``seen`` with ``record`` appended (and trimmed once it has grown a quarter too long)."""
        seen += record
        if len(seen) <= self._limit:
            return seen
        seen = seen[-self.size * _RECORD :]
        horizon = _stamp(record) - self.max_age
        while len(seen) > _RECORD and _stamp(seen) < horizon:
            seen = seen[_RECORD:]
        return seen
