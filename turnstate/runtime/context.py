"""The context object a handler receives."""

from __future__ import annotations

from typing import Any

from turnstate.activity import Activity, ChannelAccount
from turnstate.state import TurnState


class TurnContext:
    """One turn: the incoming ``activity``, ``state`` (None without ``use_state``), and the replies.

    Replies are held until the turn commits and then returned by :meth:`Bot.process`.
    """

    __slots__ = ("activity", "bot", "replies", "state")

    def __init__(self, bot: Any, activity: Activity) -> None:
        self.bot = bot
        """The :class:`~turnstate.runtime.Bot` running this turn."""
        self.activity = activity
        self.state: TurnState | None = None
        self.replies: list[dict[str, Any]] = []

    async def send(self, message: str | Activity | dict[str, Any]) -> dict[str, Any]:
        """Queue a reply: text, or a whole activity (missing routing fields are filled in)."""
        if isinstance(message, str):
            reply = Activity(type="message", text=message)
        elif isinstance(message, Activity):
            reply = message
        elif isinstance(message, dict):
            reply = Activity.from_dict(message)
        else:
            raise TypeError(f"send() takes text, an Activity or a dict, got {type(message).__name__}")
        incoming = self.activity
        if reply.conversation is None:
            reply.conversation = incoming.conversation
        if reply.channel_id is None:
            reply.channel_id = incoming.channel_id
        if reply.service_url is None:
            reply.service_url = incoming.service_url
        if reply.from_ is None and incoming.recipient is not None:
            reply.from_ = ChannelAccount(id=incoming.recipient.id, name=incoming.recipient.name)
        if reply.recipient is None and incoming.from_ is not None:
            reply.recipient = ChannelAccount(id=incoming.from_.id, name=incoming.from_.name)
        if reply.reply_to_id is None:
            reply.reply_to_id = incoming.id
        out = reply.to_dict()
        self.replies.append(out)
        return out
