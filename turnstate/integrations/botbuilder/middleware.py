"""TurnStateMiddleware: turnstate's per-turn state as botbuilder middleware.

::

    from turnstate import StateManager
    from turnstate.integrations.botbuilder import TurnStateMiddleware, state_of

    adapter.use(TurnStateMiddleware(StateManager(storage)))

    class MyBot(ActivityHandler):
        async def on_message_activity(self, turn_context):
            state = state_of(turn_context)
            count = state.conversation.incr("count")

The state is on ``turn_context.turn_state[STATE_KEY]`` (and ``turn_context.state``). It loads before the
rest of the pipeline and commits after it returns; any exception discards it. botbuilder sends replies as
the handler runs, so a redelivery that races its first delivery can still have replied; its state changes
are dropped all the same.

While a turn runs, the middleware also tells :class:`~turnstate.integrations.botbuilder.BotBuilderStorage`
which activity it is (see :mod:`.turn`), so what botbuilder's own ``BotState`` saves is exactly-once too.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from botbuilder.core import Middleware, TurnContext

from turnstate.errors import DuplicateActivityError, StateError
from turnstate.integrations.botbuilder.turn import enter_turn, leave_turn
from turnstate.manager import StateManager
from turnstate.middleware import StateMiddleware
from turnstate.state import TurnState

STATE_KEY = "turnstate.state"
"""The ``turn_context.turn_state`` entry holding the turn's TurnState."""

DuplicateHandler = Callable[[TurnContext], Awaitable[None]]


class TurnStateMiddleware(Middleware):  # type: ignore[misc]
    """botbuilder middleware that gives each turn a TurnState; register it first with ``adapter.use``.

    ``on_duplicate(turn_context)`` runs instead of the bot for an activity already handled (for example a
    Teams retry); by default such an activity is dropped quietly (and counted in ``manager.stats``).
    """

    def __init__(self, manager: StateManager, *, on_duplicate: DuplicateHandler | None = None) -> None:
        self.manager = manager
        self._on_duplicate = on_duplicate
        self._state = StateMiddleware(manager, on_duplicate=self._duplicate)

    async def on_turn(self, context: TurnContext, logic: Callable[[], Awaitable[Any]]) -> None:
        token = enter_turn(context.activity)
        try:
            await self._state(_Context(context), logic)
        finally:
            leave_turn(token)

    async def _duplicate(self, ctx: Any, error: DuplicateActivityError | None) -> None:
        if self._on_duplicate is not None:
            await self._on_duplicate(ctx.turn_context)


class _Context:
    """What StateMiddleware needs from a turn: the activity, and somewhere to put the state."""

    __slots__ = ("turn_context",)

    def __init__(self, turn_context: TurnContext) -> None:
        self.turn_context = turn_context

    @property
    def activity(self) -> Any:
        return self.turn_context.activity

    @property
    def state(self) -> TurnState | None:
        state: TurnState | None = self.turn_context.turn_state.get(STATE_KEY)
        return state

    @state.setter
    def state(self, value: TurnState) -> None:
        self.turn_context.turn_state[STATE_KEY] = value
        self.turn_context.state = value


def state_of(turn_context: TurnContext) -> TurnState:
    """The TurnState of this turn; StateError if TurnStateMiddleware is not registered on the adapter."""
    state = turn_context.turn_state.get(STATE_KEY)
    if not isinstance(state, TurnState):
        raise StateError(
            "this turn has no turnstate state: register TurnStateMiddleware(StateManager(storage)) with "
            "adapter.use(...) before the bot runs"
        )
    return state
