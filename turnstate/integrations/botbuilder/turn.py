"""The activity a botbuilder turn is handling, as BotBuilderStorage sees it.

TurnStateMiddleware enters a :class:`BridgeTurn` for the length of each turn (a context variable, so
concurrent turns on one event loop each see their own). BotBuilderStorage uses it to make what
botbuilder's ``BotState`` saves exactly-once per activity:

* every item it writes during the turn records the activity (``[channel, conversation, activity id]``);
* an item that records the turn's own activity, written by an earlier delivery of it (not by this turn),
  means the activity was handled already: reading or overwriting it raises DuplicateActivityError, which
  the middleware turns into a quiet duplicate (``on_duplicate``) with nothing of this run committed;
* an item this turn read as absent is written create-only, so two first deliveries racing to create it
  cannot both succeed.

Outside a turn (no middleware) the storage behaves as botbuilder's own storages do.
"""

from __future__ import annotations

from contextvars import ContextVar, Token
from typing import Any


class BridgeTurn:
    """What one turn did through BotBuilderStorage: the activity, keys read absent, keys written."""

    __slots__ = ("activity", "read_absent", "written")

    def __init__(self, activity: list[str] | None) -> None:
        self.activity = activity
        self.read_absent: set[str] = set()
        self.written: set[str] = set()


_current: ContextVar[BridgeTurn | None] = ContextVar("turnstate_botbuilder_turn", default=None)


def activity_record(activity: Any) -> list[str] | None:
    """``[channel, conversation, activity id]`` of a botbuilder Activity, or None if it has no id."""
    activity_id = getattr(activity, "id", None)
    if not activity_id:
        return None
    conversation = getattr(activity, "conversation", None)
    return [
        str(getattr(activity, "channel_id", None) or ""),
        str(getattr(conversation, "id", None) or ""),
        str(activity_id),
    ]


def enter_turn(activity: Any) -> Token[BridgeTurn | None]:
    """Start recording a turn for ``activity``; pass the token to :func:`leave_turn`."""
    return _current.set(BridgeTurn(activity_record(activity)))


def leave_turn(token: Token[BridgeTurn | None]) -> None:
    _current.reset(token)


def current_turn() -> BridgeTurn | None:
    """The turn being handled in this task, or None outside TurnStateMiddleware."""
    return _current.get()
