"""What a handler sees as ``ctx.state``: one :class:`ScopeState` per scope, addressed by path."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from turnstate.errors import PathError, TurnClosedError, UnknownScopeError
from turnstate.paths import join, parse
from turnstate.scope_state import (
    CLOSED_TEMP,
    ScopeState,
    TempScope,
    UnavailableScope,
    UnreadableScope,
    ValueGuard,
)
from turnstate.scopes import TEMP

__all__ = ["ScopeState", "TurnState", "UnavailableScope", "UnreadableScope", "ValueGuard"]


class TurnState:
    """``ctx.state``: the scopes of one turn, plus path access across them.

    ``state.conversation``, ``state.user``, ``state.private``, ``state.temp``, and custom scopes by
    attribute (``state.incident``) or ``state.scope("incident")``. A path's first segment names the scope;
    a single-segment path (``"foo"``) is ``temp.foo``.
    """

    __slots__ = (
        "_saver",
        "_scopes",
        "_temp",
        "activity_id",
        "conversation",
        "private",
        "resumed",
        "user",
    )

    conversation: ScopeState
    user: ScopeState
    private: ScopeState

    def __init__(
        self,
        scopes: dict[str, ScopeState],
        saver: Callable[[], Awaitable[None]] | None = None,
        activity_id: str | None = None,
        resumed: bool = False,
    ) -> None:
        self._scopes = scopes
        self._saver = saver
        self.activity_id = activity_id
        self.resumed = resumed
        """True when an earlier delivery of this activity got part of the way (it checkpointed, or its
        commit wrote some scopes): the state holds what it left, and the handler resumes from there."""
        self.conversation = scopes["conversation"]
        self.user = scopes["user"]
        self.private = scopes["private"]
        self._temp: ScopeState | None = scopes.get(TEMP)  # made on first use: most turns never use it

    @property
    def temp(self) -> ScopeState:
        temp = self._temp
        if temp is None:
            temp = self._temp = self._scopes[TEMP] = TempScope(TEMP, None, {})
        return temp

    def __getattr__(self, name: str) -> ScopeState:
        scopes = object.__getattribute__(self, "_scopes")
        try:
            return scopes[name]  # type: ignore[no-any-return]
        except KeyError:
            raise AttributeError(
                f"ctx.state has no scope {name!r}; registered scopes: {', '.join(sorted(scopes))}"
            ) from None

    def __repr__(self) -> str:
        return f"<TurnState scopes=[{', '.join(self.scope_names)}]>"

    @property
    def scope_names(self) -> tuple[str, ...]:
        return tuple(self._scopes) if self._temp is not None else (*self._scopes, TEMP)

    def scope(self, name: str) -> ScopeState:
        """The scope called ``name``; UnknownScopeError if none is registered."""
        try:
            return self._scopes[name]
        except KeyError:
            if name == TEMP:
                return self.temp
            raise UnknownScopeError(name, self.scope_names) from None

    def _split(self, path: str) -> tuple[ScopeState, str]:
        head, sep, rest = path.partition(".")
        if not sep:
            parse(path)
            return self.temp, path
        if "\\" in head:
            parts = parse(path)
            if len(parts) == 1:
                return self.temp, path
            head, rest = parts[0], join(*parts[1:])
        scope = self._scopes.get(head)
        if scope is None:
            if head == TEMP:
                scope = self.temp
            else:
                raise UnknownScopeError(head, self.scope_names, path)
        if not rest:
            raise PathError(path, "names a scope but no field; add a field name after the dot")
        return scope, rest

    def get_value(self, path: str, type: Any = None, default: Any = None) -> Any:
        """``get`` by full path: ``state.get_value("conversation.count", int)``."""
        scope, rest = self._split(path)
        return scope.get(rest, type, default)

    def set_value(self, path: str, value: Any) -> None:
        """``set`` by full path; ``state.set_value("foo", 1)`` sets ``temp.foo``."""
        scope, rest = self._split(path)
        scope.set(rest, value)

    def has_value(self, path: str) -> bool:
        """``has`` by full path."""
        scope, rest = self._split(path)
        return scope.has(rest)

    def delete_value(self, path: str) -> bool:
        """``delete`` by full path."""
        scope, rest = self._split(path)
        return scope.delete(rest)

    def close(self) -> None:
        """End the turn's state: every later use raises TurnClosedError (the turn calls this)."""
        self._saver = None  # also breaks the turn <-> state reference cycle, so both free at once
        if self._temp is None:
            self._temp = CLOSED_TEMP
        for scope in self._scopes.values():
            scope.closed = True

    async def save(self) -> None:
        """Commit the changes made so far as a checkpoint; the final commit still happens when the turn ends.

        A checkpoint records progress, not completion: if the turn then fails, a redelivery runs the handler
        again on the checkpointed state with ``resumed`` set.
        """
        if self._saver is None:
            raise TurnClosedError("turn state")
        await self._saver()
