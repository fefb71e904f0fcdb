"""The reference runtime's application object."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, overload

import msgspec

from turnstate.activity import Activity
from turnstate.errors import DuplicateActivityError
from turnstate.manager import StateManager
from turnstate.middleware import StateMiddleware
from turnstate.runtime.context import TurnContext
from turnstate.storage.base import Storage

NextFn = Callable[..., Awaitable[None]]
Middleware = Callable[[TurnContext, NextFn], Awaitable[None]]
Handler = Callable[[TurnContext], Awaitable[None]]
DuplicateHandler = Callable[[TurnContext], Awaitable[None]]


class Bot:
    """Runs activities through middleware (in registration order) and then the handlers for their type.

    State registered with :meth:`use_state` wraps the whole pipeline, so every middleware sees
    ``ctx.state`` wherever it was registered.
    """

    def __init__(self) -> None:
        self._middleware: list[Middleware] = []
        self._handlers: dict[str, list[Handler]] = {}
        self._state: StateMiddleware | None = None
        self._on_duplicate: DuplicateHandler | None = None

    @overload
    def use(self, middleware: Middleware) -> Middleware: ...
    @overload
    def use(self, middleware: None = None) -> Callable[[Middleware], Middleware]: ...

    def use(self, middleware: Middleware | None = None) -> Middleware | Callable[[Middleware], Middleware]:
        """Register ``async def mw(ctx, next)``; also usable as ``@bot.use()`` or ``@bot.use``."""
        if middleware is None:
            return self.use
        if not callable(middleware):
            raise TypeError(f"middleware must be an async callable (ctx, next), got {middleware!r}")
        self._middleware.append(middleware)
        return middleware

    def on(self, activity_type: str) -> Callable[[Handler], Handler]:
        """Register a handler for an activity type ("message", "invoke", ...; "*" for every type)."""

        def register(handler: Handler) -> Handler:
            self._handlers.setdefault(activity_type, []).append(handler)
            return handler

        return register

    def on_duplicate(self, handler: DuplicateHandler) -> DuplicateHandler:
        """Register what to do with a redelivered activity (default: nothing, no replies)."""
        self._on_duplicate = handler
        return handler

    def use_state(
        self, storage: Storage, *, rerun_on_conflict: bool = False, max_reruns: int = 3, **options: Any
    ) -> StateManager:
        """Give every turn ``ctx.state`` backed by ``storage``; options go to :class:`StateManager`.

        ``rerun_on_conflict``: on a commit conflict, drop the turn's replies and run it again on fresh
        state instead of merging (see :class:`~turnstate.middleware.StateMiddleware`).
        """
        if self._state is not None:
            raise RuntimeError("use_state() was already called for this bot; configure state once")
        manager = StateManager(storage, **options)
        self._state = StateMiddleware(
            manager,
            on_duplicate=self._duplicate,
            rerun_on_conflict=rerun_on_conflict,
            max_reruns=max_reruns,
            before_rerun=_drop_replies,
        )
        return manager

    @property
    def state_manager(self) -> StateManager | None:
        return self._state.manager if self._state is not None else None

    async def process(self, activity: Activity | dict[str, Any]) -> list[dict[str, Any]]:
        """Run one activity through the bot and return the replies it produced (after state committed)."""
        if not isinstance(activity, Activity):
            try:
                activity = Activity.from_dict(activity)
            except msgspec.ValidationError as exc:
                raise ValueError(f"not a valid Bot Framework activity: {exc}") from exc
        ctx = TurnContext(self, activity)
        if self._state is None:
            await self._run(ctx, 0)
        else:
            await self._state(ctx, lambda: self._run(ctx, 0))
        return ctx.replies

    async def _run(self, ctx: TurnContext, index: int) -> None:
        if index == len(self._middleware):
            await self._dispatch(ctx)
            return
        called = False

        async def next_(_ctx: TurnContext | None = None) -> None:
            nonlocal called
            if called:
                raise RuntimeError(f"middleware {self._middleware[index]!r} called next() twice")
            called = True
            await self._run(ctx, index + 1)

        await self._middleware[index](ctx, next_)

    async def _dispatch(self, ctx: TurnContext) -> None:
        for handler in (*self._handlers.get(ctx.activity.type, ()), *self._handlers.get("*", ())):
            await handler(ctx)

    async def _duplicate(self, ctx: TurnContext, error: DuplicateActivityError | None) -> None:
        ctx.replies.clear()
        if self._on_duplicate is not None:
            await self._on_duplicate(ctx)


def _drop_replies(ctx: TurnContext) -> None:
    ctx.replies.clear()
