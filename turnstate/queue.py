"""Commits of one manager to the same documents take turns instead of racing each other.

Turns of one bot instance that change the same conversation at once would otherwise all write with the
ETag they loaded, and all but one would conflict, re-read and retry. Queued, a commit that had to wait
re-reads and merges first and then writes once. Other instances still race through ETags. While only one
turn of the manager is open, its commit has nobody to wait for and does not queue.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection


class CommitQueue:
    """Who is committing which storage keys in this manager. Entries exist only while a commit runs."""

    __slots__ = ("_held", "_waiting", "open_turns")

    def __init__(self) -> None:
        self.open_turns = 0
        """Turns loaded and not yet closed: while only one is, its commit need not queue."""
        self._held: dict[str, None] = {}
        self._waiting: dict[str, list[asyncio.Future[None]]] = {}
        """The commits waiting for each held key that has any."""

    def enter_now(self, keys: Collection[str]) -> bool:
        """Take ``keys`` if no commit holds any of them; False (nothing taken) otherwise."""
        held = self._held
        if held and not held.keys().isdisjoint(keys):
            return False
        held.update(dict.fromkeys(keys))
        return True

    async def enter(self, keys: Collection[str]) -> None:
        """Wait until no commit holds any of ``keys``, then take them."""
        held = self._held
        while not self.enter_now(keys):
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiting.setdefault(next(key for key in keys if key in held), []).append(waiter)
            await waiter

    def leave(self, keys: Collection[str]) -> None:
        """Release ``keys`` and wake the commits waiting for them."""
        held = self._held
        for key in keys:
            del held[key]
        if self._waiting:
            for key in keys:
                for waiter in self._waiting.pop(key, ()):
                    if not waiter.done():
                        waiter.set_result(None)
