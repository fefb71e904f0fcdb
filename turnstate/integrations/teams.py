"""turnstate for the Teams SDK (``microsoft-teams-apps`` 2.x): state as ``App`` middleware.

::

    from turnstate.integrations.teams import TurnStateMiddleware, state_of

    app = App()
    app.use(TurnStateMiddleware(StateManager(storage)))  # before the handlers: it runs them

    @app.on_message
    async def on_message(ctx):
        count = state_of(ctx).conversation.incr("count")
        await ctx.send(f"Turn #{count}")

Each activity runs through :func:`turnstate.lifecycle.run_turn`: the scopes load in one read before the
handlers, commit in one write after they return, and are discarded if one raises. A redelivered activity
that is already done does not reach the handlers. The SDK's own ``ctx.state`` is left as it is.
Needs ``pip install "turnstate[teams]"``.
"""

from __future__ import annotations

import weakref
from collections.abc import Awaitable, Callable
from typing import Any

try:
    from microsoft_teams.apps import ActivityContext
except ImportError as exc:  # pragma: no cover - exercised only without the extra installed
    raise ImportError(
        "turnstate.integrations.teams needs the Teams SDK: pip install 'turnstate[teams]'"
    ) from exc

from turnstate.errors import DuplicateActivityError, StateError
from turnstate.lifecycle import run_turn
from turnstate.manager import StateManager
from turnstate.state import TurnState

DuplicateHandler = Callable[[ActivityContext[Any]], Awaitable[None]]

_states: weakref.WeakKeyDictionary[ActivityContext[Any], TurnState] = weakref.WeakKeyDictionary()
"""The state of each activity context a middleware is running; entries go when the turn ends."""


class TurnStateMiddleware:
    """Teams ``App`` middleware (``app.use(...)``) giving each activity a turnstate TurnState.

    Register it before the handlers: the App runs handlers in registration order, and the middleware
    runs the ones after it inside the turn. ``on_duplicate(ctx)`` runs instead of them for an activity
    already handled (a Teams retry); by default such an activity is dropped quietly (and counted in
    ``manager.stats``).
    """

    def __init__(self, manager: StateManager, *, on_duplicate: DuplicateHandler | None = None) -> None:
        self.manager = manager
        self._on_duplicate = on_duplicate

    async def __call__(self, ctx: ActivityContext[Any]) -> None:
        async def handler(state: TurnState) -> None:
            _states[ctx] = state
            try:
                await ctx.next()
            finally:
                _states.pop(ctx, None)

        async def duplicate(error: DuplicateActivityError | None) -> None:
            if self._on_duplicate is not None:
                await self._on_duplicate(ctx)

        await run_turn(self.manager, ctx.activity, handler, on_duplicate=duplicate)


def state_of(ctx: ActivityContext[Any]) -> TurnState:
    """The TurnState of this activity; StateError if TurnStateMiddleware is not running it."""
    state = _states.get(ctx)
    if state is None:
        raise StateError(
            "this activity has no turnstate state: register app.use(TurnStateMiddleware(StateManager("
            "storage))) before the handlers that use it"
        )
    return state
