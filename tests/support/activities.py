"""Bot Framework activities for tests, as the channels send them (camelCase JSON)."""

from __future__ import annotations

import itertools
from typing import Any

_ids = itertools.count(1)


def message(
    text: str = "hi",
    *,
    conversation: str | None = "19:conv-1@thread.v2",
    user: str | None = "29:user-1",
    name: str | None = "Ann",
    channel: str | None = "msteams",
    bot: str | None = "28:bot-1",
    tenant: str | None = "tenant-1",
    activity_id: str | None = "auto",
    type: str = "message",
    **extra: Any,
) -> dict[str, Any]:
    """A message activity; every id can be left out by passing None."""
    activity: dict[str, Any] = {"type": type, "text": text, "serviceUrl": "https://smba.example/emea/"}
    if activity_id == "auto":
        activity_id = f"act-{next(_ids)}"
    if activity_id is not None:
        activity["id"] = activity_id
    if channel is not None:
        activity["channelId"] = channel
    if conversation is not None:
        activity["conversation"] = {"id": conversation, **({"tenantId": tenant} if tenant else {})}
    if user is not None:
        activity["from"] = {"id": user, **({"name": name} if name else {})}
    if bot is not None:
        activity["recipient"] = {"id": bot, "name": "IncidentBot"}
    activity.update(extra)
    return activity


def use_every_scope(state: Any) -> None:
    """Read every scope of a turn, so a scope whose document could not be read raises its error."""
    for name in state.scope_names:
        state.scope(name).to_dict()
