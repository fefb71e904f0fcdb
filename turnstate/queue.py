"""Commits of one manager to the same documents take turns instead of racing each other.

Turns of one bot instance that change the same conversation at once would otherwise all write with the
ETag they loaded, and all but one would conflict, re-read and retry. Queued, a commit that had to wait
re-reads and merges first and then writes once. Other instances still race through ETags.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection


class CommitQueue:
    """Who is committing which storage keys in this manager. Entries exist only while a commit runs."""

    __slots__ = ("_busy",)

    def __init__(self) -> None:
        self._busy: dict[str, list[asyncio.Future[None]] | None] = {}
        """Held keys, each with the commits waiting for it (None until one does)."""

    def enter_now(self, keys: Collection[str]) -> bool:
        """Take ``keys`` if no commit holds any of them; False (nothing taken) otherwise."""
        busy = self._busy
        if busy:
            for key in keys:
                if key in busy:
                    return False
        for key in keys:
            busy[key] = None
        return True

    async def enter(self, keys: Collection[str]) -> None:
        """Wait until no commit holds any of ``keys``, then take them."""
        busy = self._busy
        while not self.enter_now(keys):
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            held = next(key for key in keys if key in busy)
            waiting = busy[held]
            if waiting is None:
                busy[held] = [waiter]
            else:
                waiting.append(waiter)
            await waiter

    def leave(self, keys: Collection[str]) -> None:
        """Release ``keys`` and wake the commits waiting for them."""
        busy = self._busy
        for key in keys:
            waiting = busy.pop(key, None)
            if waiting:
                for waiter in waiting:
                    if not waiter.done():
                        waiter.set_result(None)
