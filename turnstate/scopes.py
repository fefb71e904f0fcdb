"""Scope definitions: which documents a turn loads, how each is keyed, and how long each lives."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from turnstate.keys import KeyResult, KeyScheme, TurnIds

CONVERSATION = "conversation"
USER = "user"
PRIVATE = "private"
TEMP = "temp"
BUILTIN_SCOPES = (CONVERSATION, USER, PRIVATE)

_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}\Z")


@dataclass(frozen=True, slots=True)
class Scope:
    """A custom persisted scope, e.g. ``Scope("incident", key=lambda activity: activity.value["incident"])``.

    ``key`` receives the turn's activity as a :class:`~turnstate.activity.Activity` and returns the scope's
    id, or None when this activity has none (the scope is then unavailable for the turn and raises
    MissingIdError if used). An activity given as a dict (to ``manager.turn`` or ``Bot.process``) is
    converted once per turn, and every key function gets that same object; fields an Activity does not
    declare are dropped, so read custom data from ``value`` or ``channel_data``. An Activity is passed as
    it is, and so is any other activity object (botbuilder's, through the middleware). ``ttl`` (seconds)
    makes the document expire that long after its last write; None keeps it until deleted.
    """

    name: str
    key: Callable[[Any], str | None]
    ttl: float | None = None

    def __post_init__(self) -> None:
        if not _NAME.match(self.name) or self.name in (*BUILTIN_SCOPES, TEMP):
            raise ValueError(
                f"invalid custom scope name {self.name!r}: use lowercase letters, digits and '_', starting "
                f"with a letter, and not one of {', '.join((*BUILTIN_SCOPES, TEMP))}"
            )
        _check_ttl(self.name, self.ttl)


def _check_ttl(scope: str, ttl: float | None) -> None:
    if ttl is not None and not ttl > 0:
        raise ValueError(f"ttl for scope {scope!r} must be a positive number of seconds or None, got {ttl!r}")


@dataclass(frozen=True, slots=True)
class ScopeSpec:
    """A persisted scope as the turn engine sees it: name, key function and TTL."""

    name: str
    resolve: Callable[[KeyScheme, TurnIds, Any], KeyResult]
    ttl: float | None


def build_specs(
    scheme: KeyScheme, custom: tuple[Scope, ...], ttl: dict[str, float | None]
) -> tuple[ScopeSpec, ...]:
    """Validate options and return every persisted scope, built-ins first."""
    names = [s.name for s in custom]
    duplicates = {n for n in names if names.count(n) > 1}
    if duplicates:
        raise ValueError(f"custom scope names registered twice: {', '.join(sorted(duplicates))}")
    known = {*BUILTIN_SCOPES, *names}
    for name, value in ttl.items():
        if name not in known:
            raise ValueError(f"ttl given for unknown scope {name!r}; scopes: {', '.join(sorted(known))}")
        _check_ttl(name, value)
    specs = [
        ScopeSpec(CONVERSATION, lambda k, ids, _a: k.conversation(ids), ttl.get(CONVERSATION)),
        ScopeSpec(USER, lambda k, ids, _a: k.user(ids), ttl.get(USER)),
        ScopeSpec(PRIVATE, lambda k, ids, _a: k.private(ids), ttl.get(PRIVATE)),
    ]
    for scope in custom:
        specs.append(ScopeSpec(scope.name, _custom_resolver(scope), ttl.get(scope.name, scope.ttl)))
    return tuple(specs)


def _custom_resolver(scope: Scope) -> Callable[[KeyScheme, TurnIds, Any], KeyResult]:
    def resolve(scheme: KeyScheme, ids: TurnIds, activity: Any) -> KeyResult:
        scope_id = scope.key(activity)
        if scope_id is not None and not isinstance(scope_id, str):
            scope_id = str(scope_id)
        return scheme.custom(scope.name, ids, scope_id)

    return resolve
