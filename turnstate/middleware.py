"""State as middleware for any runtime whose middleware looks like ``async def mw(ctx, next)``.

The context object only needs an ``activity`` attribute; the middleware sets ``ctx.state``. Configuration
lives on the instance, everything per turn in locals, and exceptions propagate unchanged.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from turnstate.errors import DuplicateActivityError
from turnstate.lifecycle import run_turn
from turnstate.manager import StateManager
from turnstate.state import TurnState

Next = Callable[[], Awaitable[Any]]
DuplicateHook = Callable[[Any, DuplicateActivityError | None], Awaitable[None]]
RerunHook = Callable[[Any], Awaitable[None] | None]


class StateMiddleware:
    """Loads state before ``next()``, commits after it returns, discards if it raises
    (:func:`~turnstate.lifecycle.run_turn`).

    Redelivered activities that are already done: the handler is not run again; ``on_duplicate(ctx,
    error)`` is awaited instead (``error`` is None when the duplicate was found at load, the
    DuplicateActivityError when found at commit). Without a hook duplicates are dropped quietly (and
    counted in ``manager.stats``).

    ``rerun_on_conflict``: when the commit loses the ETag race, discard this run and call ``next()`` again
    on fresh state, up to ``max_reruns`` times (``before_rerun(ctx)`` runs first, e.g. to drop buffered
    replies). Only safe when the runtime holds replies until the commit succeeds. If a storage without
    atomic batches already wrote some scopes of the losing commit, the rest is merged instead of re-run,
    so nothing is applied twice.
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
        async def handler(state: TurnState) -> None:
            ctx.state = state
            await next()

        async def duplicate(error: DuplicateActivityError | None) -> None:
            if self.on_duplicate is not None:
                await self.on_duplicate(ctx, error)

        before_rerun = self.before_rerun
        await run_turn(
            self.manager,
            ctx.activity,
            handler,
            on_duplicate=duplicate,
            rerun_on_conflict=self.rerun_on_conflict,
            max_reruns=self.max_reruns,
            before_rerun=None if before_rerun is None else lambda: before_rerun(ctx),
        )
