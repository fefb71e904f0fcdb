"""One turn from load to commit, as every runtime and framework integration runs it.

:func:`run_turn` is built on ``async with manager.turn(activity)``: the handler runs on the loaded state,
the turn commits if it returns and discards if it raises. Around that it handles what a runtime must:
a redelivered activity that is already done (``on_duplicate``), and, in re-run mode, a commit that lost
the ETag race (the handler runs again on fresh state instead of merging).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from turnstate.errors import DuplicateActivityError, PreconditionFailedError
from turnstate.state import TurnState

if TYPE_CHECKING:
    from turnstate.manager import StateManager

log = logging.getLogger("turnstate")

Handler = Callable[[TurnState], Awaitable[Any]]
DuplicateHook = Callable[[DuplicateActivityError | None], Awaitable[None]]
RerunHook = Callable[[], Awaitable[None] | None]


async def run_turn(
    manager: StateManager,
    activity: Any,
    handler: Handler,
    *,
    on_duplicate: DuplicateHook | None = None,
    rerun_on_conflict: bool = False,
    max_reruns: int = 3,
    before_rerun: RerunHook | None = None,
) -> None:
    """Run ``handler(state)`` for ``activity`` inside one turn, committing only if it returns.

    A redelivery that is already done does not run the handler: ``on_duplicate(None)`` is awaited
    instead, or ``on_duplicate(error)`` when a concurrent delivery completed it during the commit.
    ``rerun_on_conflict``: when the commit loses the ETag race, run the handler again on fresh state, up to
    ``max_reruns`` times, calling ``before_rerun()`` first (to drop replies held back until the commit). A
    commit that already wrote some of its documents merges the rest instead, so nothing applies twice.
    Every other exception propagates unchanged after the turn's changes were discarded.
    """
    reruns = 0
    while True:
        may_rerun = rerun_on_conflict and reruns < max_reruns
        turn = manager.turn(activity, on_conflict="raise" if may_rerun else None)
        try:
            async with turn as state:
                if not turn.duplicate:
                    await handler(state)
        except DuplicateActivityError as exc:
            if on_duplicate is not None:
                await on_duplicate(exc)
            return
        except PreconditionFailedError as exc:
            if not may_rerun:
                raise
            reruns += 1
            manager.stats.reruns += 1
            log.info(
                "turnstate: re-running turn after commit conflict on %s (rerun %d)",
                exc.keys,
                reruns,
                extra={"keys": exc.keys, "rerun": reruns},
            )
            if before_rerun is not None:
                result = before_rerun()
                if result is not None:
                    await result
            continue
        if turn.duplicate and on_duplicate is not None:
            await on_duplicate(None)
        return
