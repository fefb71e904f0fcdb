"""State as middleware for any runtime whose middleware looks like ``async def mw(ctx, next)``.

The context object only needs an ``activity`` attribute; the middleware sets ``ctx.state``. Configuration
lives on the instance, everything per turn in locals, and exceptions propagate unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from turnstate.errors import DuplicateActivityError, PreconditionFailedError
from turnstate.manager import StateManager

log = logging.getLogger("turnstate")

Next = Callable[[], Awaitable[Any]]
DuplicateHook = Callable[[Any, DuplicateActivityError | None], Awaitable[None]]
RerunHook = Callable[[Any], Awaitable[None] | None]


class StateMiddleware:
    """Loads state before ``next()``, commits after it returns, discards if it raises.

    Redelivered activities: the handler is not run again; ``on_duplicate(ctx, error)`` is awaited instead
    (``error`` is None when the duplicate was found at load, the DuplicateActivityError when found at
    commit). Without a hook duplicates are dropped quietly (and counted in ``manager.stats``).

    ``rerun_on_conflict``: when the commit loses the ETag race, discard this run and call ``next()`` again
    on fresh state, up to ``max_reruns`` times (``before_rerun(ctx)`` runs first, e.g. to drop buffered
    replies). Only safe when the runtime holds replies until the commit succeeds. If a non-atomic storage
    already wrote some scopes of the losing commit, the rest is merged instead of re-run, so nothing is
    applied twice.
    """

    def __init__(
        self,
        manager: StateManager,
        *,
        on_duplicate: DuplicateHook | None = None,
        rerun_on_conflict: bool = False,
        max_reruns: int = 3,
        before_rerun: RerunHook | None = None,
    ) -> None:
        self.manager = manager
        self.on_duplicate = on_duplicate
        self.rerun_on_conflict = rerun_on_conflict
        self.max_reruns = max_reruns
        self.before_rerun = before_rerun

    async def __call__(self, ctx: Any, next: Next) -> None:
        reruns = 0
        while True:
            turn = self.manager.turn(ctx.activity)
            ctx.state = await turn.load()
            try:
                if turn.duplicate:
                    turn.discard()
                    await self._duplicate(ctx, None)
                    return
                await next()
            except BaseException:
                turn.discard()
                raise
            may_rerun = self.rerun_on_conflict and reruns < self.max_reruns
            try:
                await turn.commit(on_conflict="raise" if may_rerun else None)
                return
            except PreconditionFailedError as exc:
                if exc.written:
                    await turn.commit(on_conflict="merge")
                    return
                reruns += 1
                self.manager.stats.reruns += 1
                log.info(
                    "turnstate: re-running turn after commit conflict on %s (rerun %d)",
                    exc.keys,
                    reruns,
                    extra={"keys": exc.keys, "rerun": reruns},
                )
                if self.before_rerun is not None:
                    result = self.before_rerun(ctx)
                    if result is not None:
                        await result
            except DuplicateActivityError as exc:
                await self._duplicate(ctx, exc)
                return
            finally:
                turn.close()

    async def _duplicate(self, ctx: Any, error: DuplicateActivityError | None) -> None:
        if self.on_duplicate is not None:
            await self.on_duplicate(ctx, error)
