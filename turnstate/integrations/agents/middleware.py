"""turnstate as Agents SDK adapter middleware: every turn of an agent runs inside :func:`run_turn`.

Works for ``ActivityHandler`` agents (handlers call :func:`state_of`) and for ``AgentApplication``
agents, whose ``TurnState`` is then :class:`~turnstate.integrations.agents.state.AgentTurnState`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from microsoft_agents.hosting.core import Middleware, TurnContext

from turnstate.errors import DuplicateActivityError, StateError
from turnstate.lifecycle import run_turn
from turnstate.manager import StateManager
from turnstate.state import TurnState

STATE_KEY = "turnstate.state"
"""The ``context.turn_state`` entry holding the turn's turnstate TurnState."""

VERDICT_KEY = "turnstate.saved"
"""The ``context.turn_state`` entry an AgentApplication's state sets: False once loaded, True once saved."""

DuplicateHandler = Callable[[TurnContext], Awaitable[None]]


class _NotSaved(Exception):
    """The AgentApplication loaded its state and never saved it: its turn failed, discard the changes."""


class TurnStateMiddleware(Middleware):
    """Adapter middleware that runs each turn through turnstate; register it with ``adapter.use(...)``.

    State loads in one read before the agent runs and commits in one write after it returns; an exception
    discards it. An ``AgentApplication`` catches its handlers' errors itself and saves its state only when
    the turn succeeded: a turn whose application state was loaded and not saved is discarded too.
    ``on_duplicate(context)`` runs instead of the agent for an activity already handled (a channel's
    redelivery); without it such an activity is dropped quietly (and counted in ``manager.stats``).
    """

    def __init__(self, manager: StateManager, *, on_duplicate: DuplicateHandler | None = None) -> None:
        self.manager = manager
        self._on_duplicate = on_duplicate

    async def on_turn(self, context: TurnContext, logic: Callable[[TurnContext], Awaitable[Any]]) -> None:
        async def handler(state: TurnState) -> None:
            context.turn_state[STATE_KEY] = state
            try:
                await logic(context)
                if context.turn_state.get(VERDICT_KEY) is False:
                    raise _NotSaved
            finally:
                del context.turn_state[STATE_KEY]

        async def duplicate(error: DuplicateActivityError | None) -> None:
            if self._on_duplicate is not None:
                await self._on_duplicate(context)

        try:
            await run_turn(self.manager, context.activity, handler, on_duplicate=duplicate)
        except _NotSaved:
            return  # the application reported its error through its own error handlers


def state_of(context: TurnContext) -> TurnState:
    """This turn's turnstate TurnState; StateError if TurnStateMiddleware is not on the adapter."""
    state = context.turn_state.get(STATE_KEY)
    if not isinstance(state, TurnState):
        raise StateError(
            "this turn has no turnstate state: register TurnStateMiddleware(StateManager(storage)) with "
            "adapter.use(...) before the agent runs"
        )
    return state
