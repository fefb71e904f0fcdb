"""The window of recently committed activity ids kept in each document (its ``seen`` field).

The window is one ASCII string of fixed-width records, oldest first: ``|`` + a 12-character digest of the
activity id (48 bits of BLAKE2b, in hex) + the commit time in base-36 seconds (6 characters).
Records never contain ``|`` and need no JSON escaping, so checking an id is one substring search, adding
one is a concatenation, and trimming (by count, then age) is slicing. The engine keeps the window as the
bytes stored in the document and writes them back verbatim, so a long window costs no JSON work per turn.
Two ids in one window share a digest with a probability under 1e-13, so a genuine new activity is, in
practice, never taken for a redelivery.
"""

from __future__ import annotations

import time
from binascii import hexlify
from hashlib import blake2b

_RECORD = 19  # "|" + 12 digest characters + 6 time characters
_DIGEST = 13  # length of "|" + digest
_HASHER = blake2b(digest_size=6)


def _base36(n: int) -> bytes:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while n:
        n, r = divmod(n, 36)
        out = digits[r] + out
    return out.rjust(6, "0")[-6:].encode("ascii")


def _stamp(record: bytes) -> int:
    try:
        return int(record[_DIGEST:_RECORD], 36)
    except ValueError:
        return -1  # not a record this module wrote: it ages out first


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
        """Whether the activity with this ``token`` is recorded in the window ``seen``."""
        # partition: a one-argument method, so nothing to parse, and a miss returns the window itself
        # uncopied. (find parses optional arguments; `in` first tries the token as an int, raising inside.)
        return seen.partition(token)[1] != b""

    def record(self, token: bytes, now: float | None = None) -> bytes:
        """The record of ``token`` committed at ``now`` (default: the current time), for :meth:`remember`."""
        stamp = int(time.time() if now is None else now)
        if self._stamp[0] != stamp:
            self._stamp = (stamp, _base36(stamp))
        return token + self._stamp[1]

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
