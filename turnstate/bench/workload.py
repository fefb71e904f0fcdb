"""The benchmark's turn, the same for turnstate and for every peer.

Conversation N has one user. Each turn is a new message activity in it: the turn loads the conversation
and the user document, increments ``conversation.count``, sets ``conversation.last`` (the message text)
and ``user.last_seen`` (the turn number), and writes both documents back with a precondition on the
version it read. The conversation document also holds ``history``, a string written on its first turn
and kept after, sized so that the stored document is about ``document_bytes`` long; the user document
stays small (about 200 bytes). turnstate runs with its defaults (redelivery detection on, merge on
conflict), conversation and user scopes only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from turnstate.keys import KeyScheme, ids_of
from turnstate.manager import StateManager
from turnstate.storage.base import Storage

CHANNEL = "bench"
HISTORY_OVERHEAD = 900
"""Bytes of a stored conversation document besides its history, once its redelivery window is full (the
last 32 activities, about 0.7 KB), with its fields and envelope."""


class Subject(Protocol):
    """One side of a comparison: something that runs the workload's turn."""

    name: str

    async def turn(self, conversation: int, number: int) -> None:
        """Run turn ``number`` of conversation ``conversation``."""
        ...

    async def aclose(self) -> None: ...


def history(document_bytes: int) -> str:
    """The history string that brings a conversation document to about ``document_bytes``."""
    return "h" * max(0, document_bytes - HISTORY_OVERHEAD)


def text_of(number: int) -> str:
    return f"message {number}: the printer on floor 3 is out of toner again"


def activity(run: str, conversation: int, number: int, *, writer: int | None = None) -> dict[str, Any]:
    """The message activity of turn ``number`` in conversation ``conversation`` of run ``run``.

    ``writer``: on a conversation shared by several writers, each writer is a different user.
    """
    user = conversation if writer is None else writer
    sender = f"u{user}"
    return {
        "type": "message",
        "id": f"{run}-{conversation}-{sender}-{number}",
        "channelId": CHANNEL,
        "serviceUrl": "https://bench.invalid/",
        "conversation": {"id": f"{run}-c{conversation}", "tenantId": "bench-tenant"},
        "from": {"id": f"{run}-{sender}", "name": f"User {user}"},
        "recipient": {"id": "bench-bot", "name": "Bench"},
        "text": text_of(number),
    }


def keys_of(run: str, conversations: int, writers: int = 0) -> list[str]:
    """The storage keys turnstate's turns of run ``run`` write (for clean-up)."""
    scheme = KeyScheme()
    keys: list[str] = []
    for conversation in range(conversations):
        ids = ids_of(activity(run, conversation, 0))
        keys += [scheme.conversation(ids).key or "", scheme.user(ids).key or ""]
    for writer in range(writers):
        keys.append(scheme.user(ids_of(activity(run, 0, 0, writer=writer))).key or "")
    return [key for key in keys if key]


@dataclass
class TurnstateSubject:
    """The workload's turn through a StateManager over ``storage``."""

    storage: Storage
    run: str
    document_bytes: int
    name: str = "turnstate"

    def __post_init__(self) -> None:
        self.manager = StateManager(self.storage, builtin_scopes=("conversation", "user"))
        self._history = history(self.document_bytes)

    async def turn(self, conversation: int, number: int, *, writer: int | None = None) -> None:
        async with self.manager.turn(activity(self.run, conversation, number, writer=writer)) as state:
            talk = state.conversation
            talk.incr("count")
            talk.set("last", text_of(number))
            if not talk.has("history"):
                talk.set("history", self._history)
            state.user.set("last_seen", number)

    async def aclose(self) -> None:
        """The storage is the caller's to close."""
