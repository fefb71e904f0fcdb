"""turnstate for the Bot Framework SDK (botbuilder-python 4.x).

Two pieces, usable together or apart:

* :class:`TurnStateMiddleware`: turnstate's own per-turn state (``state_of(turn_context)``), loaded before
  the bot runs and committed after it returns, with redelivered activities detected.
* :class:`BotBuilderStorage`: a ``botbuilder.core.Storage`` over any turnstate storage, so botbuilder's
  ``ConversationState``/``UserState`` (and the dialogs kept in them) live in turnstate's backends with
  cross-instance ETags, TTL per key prefix and field encryption. :func:`import_botbuilder_items` copies
  data a bot already has (MemoryStorage dumps, CosmosDbPartitionedStorage items) into it.

Needs ``pip install "turnstate[botbuilder]"``.
"""

from __future__ import annotations

try:
    import botbuilder.core  # noqa: F401
    import jsonpickle  # noqa: F401
except ImportError as exc:  # exercised by a test that hides botbuilder
    raise ImportError(
        "turnstate.integrations.botbuilder needs botbuilder-core and jsonpickle: "
        "pip install 'turnstate[botbuilder]'"
    ) from exc

from turnstate.integrations.botbuilder.middleware import (
    STATE_KEY,
    DuplicateHandler,
    TurnStateMiddleware,
    state_of,
)
from turnstate.integrations.botbuilder.migration import ImportReport, import_botbuilder_items
from turnstate.integrations.botbuilder.storage import (
    SCOPES,
    BotBuilderConfigError,
    BotBuilderStorage,
    ETagConflictError,
    MissingArgumentError,
)

__all__ = [
    "SCOPES",
    "STATE_KEY",
    "BotBuilderConfigError",
    "BotBuilderStorage",
    "DuplicateHandler",
    "ETagConflictError",
    "ImportReport",
    "MissingArgumentError",
    "TurnStateMiddleware",
    "import_botbuilder_items",
    "state_of",
]
