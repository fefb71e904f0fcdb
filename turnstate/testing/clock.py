"""A clock that moves only when told to, for testing expiry without sleeping."""

from __future__ import annotations


class ManualClock:
    """Callable like ``time.time``; ``advance(seconds)``, ``await sleep(seconds)`` or setting ``now``
    moves it."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    async def sleep(self, seconds: float) -> None:
        """Move the clock ``seconds`` forward at once: ``asyncio.sleep`` for whatever runs on this clock."""
        self.advance(seconds)
