"""The window of recently committed activity ids kept in each document (its ``seen`` field).

One string, oldest entry first, entries separated by ``|``, each ``<id> <unix seconds>``; ``\\``, ``|``
and space inside ids are escaped as ``\\\\``, ``\\p`` and ``\\s``. A plain string keeps the check at load
and the append at commit to a substring search and a concatenation; the window is split and trimmed (by
count and age) only when it has grown past its size by a quarter.
"""

from __future__ import annotations

import time


def _escape(activity_id: str) -> str:
    if "\\" in activity_id or "|" in activity_id or " " in activity_id:
        return activity_id.replace("\\", "\\\\").replace("|", "\\p").replace(" ", "\\s")
    return activity_id


class SeenWindow:
    """Remembers at least the last ``size`` activity ids per document, for up to ``max_age`` seconds."""

    __slots__ = ("_limit", "max_age", "size")

    def __init__(self, size: int = 32, max_age: float = 3600.0) -> None:
        if size < 1:
            raise ValueError(f"the redelivery window must hold at least 1 id, got {size!r}")
        if not max_age > 0:
            raise ValueError(f"the redelivery window's max age must be positive, got {max_age!r}")
        self.size = size
        self.max_age = max_age
        self._limit = size + max(1, size // 4)

    @staticmethod
    def contains(seen: str, activity_id: str) -> bool:
        """Whether ``activity_id`` is in the window ``seen``."""
        return bool(seen) and ("|" + _escape(activity_id) + " ") in ("|" + seen)

    def remember(self, seen: str, activity_id: str) -> str:
        """The window ``seen`` with ``activity_id`` appended (and trimmed when it has grown too long)."""
        now = int(time.time())
        entry = f"{_escape(activity_id)} {now}"
        if not seen:
            return entry
        count = seen.count("|") + 1
        if count < self._limit:
            return seen + "|" + entry
        # keep the newest size-1 entries, then drop any older than max_age (entries are in time order)
        kept = seen.split("|", count - (self.size - 1))[-1] if self.size > 1 else ""
        horizon = now - self.max_age
        while kept:
            oldest, _, rest = kept.partition("|")
            stamp = oldest.rpartition(" ")[2]
            if stamp.isdigit() and int(stamp) >= horizon:
                break
            kept = rest
        return kept + "|" + entry if kept else entry
