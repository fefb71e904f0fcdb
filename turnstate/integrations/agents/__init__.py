"""turnstate for the Microsoft 365 Agents SDK (``microsoft-agents-hosting-core``).

::

    manager = StateManager(storage)
    adapter.use(TurnStateMiddleware(manager))
    app = AgentApplication[AgentTurnState](
        storage=AgentsStorage(storage), adapter=adapter, turn_state_factory=AgentTurnState
    )

* :class:`TurnStateMiddleware` runs every turn through :func:`turnstate.lifecycle.run_turn`; an
  ``ActivityHandler`` reaches the state with :func:`state_of`.
* :class:`AgentTurnState` is an ``AgentApplication``'s TurnState over it, with the SDK's API.
* :class:`AgentsStorage` is the SDK's ``Storage`` (OAuth flows, proactive references, ``AgentState``)
  over any turnstate storage, with TTL and field encryption.
* :func:`copy_agents_state` moves state stored by the SDK into turnstate's documents.

Needs ``pip install "turnstate[agents]"``.
"""

from __future__ import annotations

try:
    import microsoft_agents.hosting.core  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised only without the extra installed
    raise ImportError(
        "turnstate.integrations.agents needs the Microsoft 365 Agents SDK: pip install 'turnstate[agents]'"
    ) from exc

from turnstate.integrations.agents.middleware import STATE_KEY, TurnStateMiddleware, state_of
from turnstate.integrations.agents.migrate import copy_agents_state, unwrap_cosmos_item
from turnstate.integrations.agents.state import AgentTurnState
from turnstate.integrations.agents.storage import ITEM_SCOPE, AgentsStorage

__all__ = [
    "ITEM_SCOPE",
    "STATE_KEY",
    "AgentTurnState",
    "AgentsStorage",
    "TurnStateMiddleware",
    "copy_agents_state",
    "state_of",
    "unwrap_cosmos_item",
]
