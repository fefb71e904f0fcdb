"""What a turn works with, fixed when its manager is made: :class:`TurnConfig`, and :class:`TurnPlan`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, Protocol

from turnstate.keys import TurnIds
from turnstate.loader import DocumentLoader
from turnstate.merge import MergePolicies
from turnstate.queue import CommitQueue
from turnstate.redelivery import SeenWindow
from turnstate.scopes import ScopeSpec
from turnstate.state import ScopeState, ValueGuard
from turnstate.stats import Stats
from turnstate.storage.base import Storage


class CommitObserver(Protocol):
    """Told what a commit meets (the telemetry extra's :class:`~turnstate.telemetry.Telemetry` is one)."""

    def conflict(self, keys: list[str], attempt: int) -> None:
        """A write of ``keys`` lost the ETag race on attempt ``attempt``."""


class TurnPlan(NamedTuple):
    """The documents a turn loads (scope spec and storage key) and the scopes it cannot use this turn."""

    wanted: tuple[tuple[ScopeSpec, str], ...]
    keys: list[str]
    unavailable: dict[str, ScopeState]
    """Scopes that are disabled or lack an id; copy before adding to it."""
    missing: tuple[tuple[ScopeSpec, str], ...]


@dataclass(frozen=True, slots=True)
class TurnConfig:
    """A manager's settings and shared parts, as its turns use them."""

    storage: Storage
    plan: Callable[[TurnIds, Any], TurnPlan]
    """Which documents a turn for an activity (with these ids) loads."""
    loader: DocumentLoader
    """Decodes and decrypts what turns read; remembers what they write."""
    window: SeenWindow | None
    """The redelivery window kept in each document, or None when redelivery detection is off."""
    policies: MergePolicies
    on_conflict: Literal["merge", "raise"]
    max_commit_attempts: int
    backoff: float
    """The shortest backoff between two conflicting commits, in seconds."""
    guard: ValueGuard | None
    """Checks every value set (the secrets guard), or None."""
    commits: CommitQueue
    stats: Stats
    telemetry: CommitObserver | None = None
    """Traces and measures turns (the storage above is then traced too), or None."""
