"""Moving state the Agents SDK stored into turnstate's documents.

The SDK's ``ConversationState`` and ``UserState`` store one JSON object per key,
``{channel}/conversations/{conversation id}`` and ``{channel}/users/{user id}``: as is in its
MemoryStorage (a dict of key to object), and as ``{"id": <escaped key>, "realId": <key>, "document":
<object>}`` items in its Cosmos DB storage. :func:`copy_agents_state` copies each such object into the
turnstate conversation or user scope of the same ids, one turn per document through
:func:`~turnstate.lifecycle.run_turn` (so TTL, encryption and key scheme apply). Other keys (sign-in
flows, proactive references) are left to :class:`~turnstate.integrations.agents.AgentsStorage`, which
serves them under their keys as they are.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from turnstate.errors import CorruptDocumentError
from turnstate.lifecycle import run_turn
from turnstate.manager import StateManager
from turnstate.paths import join
from turnstate.scopes import CONVERSATION, USER
from turnstate.state import TurnState

_KINDS = {"conversations": CONVERSATION, "users": USER}


@dataclass
class CopyReport:
    """What :func:`copy_agents_state` did: keys copied, and keys that are not SDK scope state."""

    copied: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def unwrap_cosmos_item(item: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """The SDK key and JSON object of an item of the SDK's Cosmos DB storage (``realId``, ``document``)."""
    key = item.get("realId")
    document = item.get("document")
    if not isinstance(key, str) or not isinstance(document, dict):
        raise CorruptDocumentError(
            str(item.get("id")),
            "not an Agents SDK Cosmos DB item: it needs a string 'realId' and an object 'document'",
        )
    return key, document


async def copy_agents_state(
    items: Mapping[str, Mapping[str, Any]] | Iterable[tuple[str, Mapping[str, Any]]],
    manager: StateManager,
    *,
    bot: str | None = None,
    tenant: str | None = None,
) -> CopyReport:
    """Copy the SDK's conversation and user state documents into ``manager``'s scopes.

    ``items``: SDK key to stored JSON object (the SDK MemoryStorage's dict, or pairs from
    :func:`unwrap_cosmos_item`). ``bot`` and ``tenant``: the ids the agent's activities carry
    (``recipient.id``, ``conversation.tenantId``), which turnstate keys include. A field the turnstate
    scope already holds is kept, so running the copy again, even after the agent moved over, changes
    nothing it already has.
    """
    report = CopyReport()
    pairs = items.items() if isinstance(items, Mapping) else items
    for key, document in pairs:
        channel, _, rest = key.partition("/")
        kind, _, scope_id = rest.partition("/")
        scope = _KINDS.get(kind)
        if not channel or scope is None or not scope_id:
            report.skipped.append(key)
            continue
        if not isinstance(document, Mapping):
            raise CorruptDocumentError(key, f"expected a JSON object, got {type(document).__name__}")
        await run_turn(manager, _activity(scope, channel, scope_id, bot, tenant), _filler(scope, document))
        report.copied.append(key)
    return report


def _activity(scope: str, channel: str, scope_id: str, bot: str | None, tenant: str | None) -> dict[str, Any]:
    activity: dict[str, Any] = {"type": "event", "channelId": channel}
    if bot is not None:
        activity["recipient"] = {"id": bot}
    if tenant is not None:
        activity["channelData"] = {"tenant": {"id": tenant}}
    if scope == CONVERSATION:
        activity["conversation"] = {"id": scope_id}
    else:
        activity["from"] = {"id": scope_id}
    return activity


def _filler(scope: str, document: Mapping[str, Any]) -> Any:
    async def fill(state: TurnState) -> None:
        target = state.scope(scope)
        for name, value in document.items():
            path = join(name)  # the SDK's property names may hold dots
            if not target.has(path):
                target.set(path, value)

    return fill
