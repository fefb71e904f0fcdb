"""Scope TTL through real turns, on every storage that has landed (real time: each backend's own clock)."""

from __future__ import annotations

import asyncio

from tests.support.activities import message
from tests.support.backends import Backend
from turnstate import Scope, StateManager


async def test_expired_scope_reads_as_absent_and_scopes_without_ttl_stay(backend: Backend) -> None:
    incident = Scope("incident", key=lambda a: "INC-1", ttl=1.0)
    manager = StateManager(backend.open(), ttl={"conversation": 1.0}, scopes=[incident])
    async with manager.turn(message()) as state:
        state.conversation.set("flow", "approval")
        state.incident.set("status", "open")
        state.user.set("language", "en")
    async with manager.turn(message()) as state:
        assert state.conversation.get("flow") == "approval"
    await asyncio.sleep(1.6)
    async with manager.turn(message()) as state:
        assert state.conversation.get("flow") is None
        assert state.incident.get("status") is None
        assert state.user.get("language") == "en"
        state.conversation.set("flow", "intake")  # an expired document is created afresh
    async with manager.turn(message()) as state:
        assert state.conversation.to_dict() == {"flow": "intake"}
