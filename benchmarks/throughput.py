"""Shared by the storage benchmarks: turns per second for some number of concurrent conversations."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

Turn = Callable[[int], Awaitable[None]]
"""One turn of conversation number N."""


async def turns_per_second(turn: Turn, conversations: int, seconds: float) -> float:
    """Run ``conversations`` loops of turns concurrently for ``seconds``; return the total turns/s."""
    done = 0
    stop = time.perf_counter() + seconds

    async def conversation(index: int) -> None:
        nonlocal done
        while time.perf_counter() < stop:
            await turn(index)
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(conversation(i) for i in range(conversations)))
    return done / (time.perf_counter() - started)
