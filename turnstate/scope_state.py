"""One scope of a turn: its fields, read and written by path (:class:`ScopeState`), and the stand-ins for
scopes a turn cannot use."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar, overload

import msgspec

from turnstate.document import MAX_DEPTH
from turnstate.errors import (
    MissingIdError,
    PathError,
    StateTypeError,
    TurnClosedError,
    UnknownScopeError,
)
from turnstate.paths import Path, parse
from turnstate.scopes import TEMP
from turnstate.secrets import MIN_LENGTH as SECRET_MIN_LENGTH
from turnstate.values import to_storable, too_deep

T = TypeVar("T")

ValueGuard = Callable[[str, Path, Any], None]
"""Called by set() with (scope name, path, encoded value); raises to refuse the value."""


def _describe(value: Any) -> str:
    return "null" if value is None else f"a {type(value).__name__}"


_PLAIN: set[str] = set()
"""Field names seen to need no path parsing, so the next check of one is a single set lookup."""


def _plain(path: str) -> bool:
    """Whether ``path`` is one plain field name: not empty, no dot, no escape. Remembers those that are."""
    if not path or "." in path or "\\" in path:
        return False
    if len(_PLAIN) >= 4096:
        _PLAIN.clear()  # bounded: field names come from code, but nothing stops a bot from minting them
    _PLAIN.add(path)
    return True


class ScopeState:
    """The fields of one scope for the current turn.

    Paths are relative to the scope (``"profile.email"``). Values are stored in their JSON form, checked
    when set; changes reach storage only when the turn commits.
    """

    __slots__ = ("_deltas", "_guard", "closed", "exact", "fields", "key", "name", "shaped", "touched")

    def __init__(
        self, name: str, key: str | None, data: dict[str, Any], guard: ValueGuard | None = None
    ) -> None:
        self.name = name
        self.key = key
        self.fields = data
        """The live fields: the turn engine encodes them; handlers read and write through get and set."""
        self._deltas: dict[Path, int | float] | None = None  # made by the first incr
        self.closed = False
        """The turn ended: every use raises TurnClosedError."""
        self._guard = guard
        # what the turn engine reads to commit the scope (handlers use get, set and the rest):
        self.touched = False
        """Something may have changed the fields: a write, or a live object or list handed out."""
        self.exact = True
        """The fields hold only what decoding their JSON gives: no live object or list was handed out for
        edits in place, and no merge placed values from a custom policy."""
        self.shaped = False
        """A field may have gained or lost an object or a list since load (False while only scalars were
        set at top-level names: the document cache then reuses what it knew of the loaded fields)."""

    def __repr__(self) -> str:
        fields = ", ".join(sorted(self.fields)) if not self.closed else "closed"
        return f"<ScopeState {self.name} key={self.key!r} fields=[{fields}]>"

    @property
    def deltas(self) -> dict[Path, int | float] | None:
        """What :meth:`incr` added at each path this turn (None if nothing), merged as sums on conflict."""
        return self._deltas

    def replace(self, data: dict[str, Any]) -> None:
        """Take ``data`` as the fields (a merge's result): changed, and not known to be exact."""
        self.fields.clear()
        self.fields.update(data)
        self.touched = True
        self.exact = False

    def _where(self, path: str) -> str:
        return f"{self.name}.{path}"

    def _node(self, parts: Path, path: str, create: bool) -> dict[str, Any] | None:
        if self.closed:
            raise TurnClosedError(f"state scope {self.name!r}")
        if create:
            self.touched = True
            if len(parts) > 1:
                self.shaped = True
                if len(parts) > MAX_DEPTH + 1:  # an object for each segment but the last
                    raise too_deep(self.name, path)
        node = self.fields
        for segment in parts[:-1]:
            child = node.get(segment)
            if child is None:
                if not create:
                    return None
                child = node[segment] = {}
            elif type(child) is not dict:
                raise PathError(
                    self._where(path), f"{segment!r} holds {_describe(child)}, not an object with fields"
                )
            node = child
        return node

    @overload
    def get(self, path: str) -> Any: ...
    @overload
    def get(self, path: str, type: type[T]) -> T | None: ...
    @overload
    def get(self, path: str, type: type[T], default: T) -> T: ...
    @overload
    def get(self, path: str, type: None = None, *, default: Any) -> Any: ...

    def get(self, path: str, type: Any = None, default: Any = None) -> Any:
        """Return the value at ``path``, or ``default`` (None) when absent or null.

        With ``type``, the value is converted and validated through msgspec (int, str, a Struct, a
        dataclass, datetime, ...); a mismatch raises StateTypeError naming the path and both types.
        """
        if path.__class__ is str and (path in _PLAIN or _plain(path)) and not self.closed:
            value = self.fields.get(path)  # the common case, one plain field name, needs no parsing
        else:
            parts = parse(path)
            node = self._node(parts, path, False)
            value = None if node is None else node.get(parts[-1])
        if value is None:
            return default
        cls = value.__class__
        if cls is dict or cls is list:
            self.touched = True  # the caller may edit it in place
            self.exact = False
        if type is None:
            return value
        if cls is type and (cls is int or cls is str or cls is dict or cls is list or cls is bool):
            return value
        if type is float and (cls is int or cls is float):
            return float(value)
        try:
            return msgspec.convert(value, type)
        except msgspec.ValidationError as exc:
            raise StateTypeError(self._where(path), type, _describe(value), str(exc)) from exc

    def set(self, path: str, value: Any) -> None:
        """Set the value at ``path``, creating intermediate objects; raise StateValueError if unstorable."""
        cls = value.__class__
        if cls is str:
            stored = value
            # short strings cannot hold a credential: skip the scan for them
            if len(value) >= SECRET_MIN_LENGTH and self._guard is not None:
                self._guard(self.name, parse(path), stored)
        elif cls is int or cls is bool or value is None:
            stored = value
        else:
            plain = path.__class__ is str and (path in _PLAIN or _plain(path))
            # the objects along a dotted path count towards the depth limit too
            stored = to_storable(value, self.name, path, 0 if plain else len(parse(path)) - 1)
            if self._guard is not None:
                self._guard(self.name, parse(path), stored)
            if stored.__class__ is dict or stored.__class__ is list:
                self.shaped = True
        # the common case, one plain field name, needs no parsing
        if path.__class__ is str and (path in _PLAIN or _plain(path)) and not self.closed:
            self.fields[path] = stored
            self.touched = True
            return
        parts = parse(path)
        node = self._node(parts, path, True)
        assert node is not None  # create=True always yields a node
        node[parts[-1]] = stored

    def delete(self, path: str) -> bool:
        """Remove the value at ``path``; return whether there was one."""
        parts = parse(path)
        node = self._node(parts, path, False)
        if node is None or parts[-1] not in node:
            return False
        del node[parts[-1]]
        self.touched = True
        self.shaped = True
        return True

    def has(self, path: str) -> bool:
        """Whether ``path`` holds a value (null counts as a value)."""
        parts = parse(path)
        node = self._node(parts, path, False)
        return node is not None and parts[-1] in node

    __contains__ = has

    def incr(self, path: str, n: int | float = 1) -> int | float:
        """Add ``n`` to the number at ``path`` (absent counts as 0) and return the result.

        The increment is remembered as a delta, so concurrent increments from other turns all count when
        commits are merged.
        """
        parts = parse(path)
        node = self._node(parts, path, True)
        assert node is not None  # create=True always yields a node
        current = node.get(parts[-1], 0)
        if current is None:
            current = 0
        if type(current) not in (int, float) or type(n) not in (int, float):
            raise StateTypeError(self._where(path), int, _describe(current if type(n) in (int, float) else n))
        result: int | float = current + n
        to_storable(result, self.name, path)
        node[parts[-1]] = result
        deltas = self._deltas
        if deltas is None:
            deltas = self._deltas = {}
        deltas[parts] = deltas.get(parts, 0) + n
        return result

    def clear(self) -> None:
        """Remove every field of this scope."""
        self._node(("",), "", False)
        self.fields.clear()
        self.touched = True
        self.shaped = True

    def keys(self) -> list[str]:
        """The top-level field names."""
        self._node(("",), "", False)
        return list(self.fields)

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def to_dict(self) -> dict[str, Any]:
        """A deep copy of the scope's fields."""
        self._node(("",), "", False)
        return msgspec.json.decode(msgspec.json.encode(self.fields))  # type: ignore[no-any-return]


class TempScope(ScopeState):
    """The per-turn scope: never stored, so it holds any Python object, unchecked."""

    __slots__ = ()

    def set(self, path: str, value: Any) -> None:
        parts = parse(path)
        node = self._node(parts, path, True)
        assert node is not None  # create=True always yields a node
        node[parts[-1]] = value

    def to_dict(self) -> dict[str, Any]:
        self._node(("",), "", False)
        return dict(self.fields)


CLOSED_TEMP = TempScope(TEMP, None, {})
CLOSED_TEMP.closed = True  # stands in for the temp scope of a turn that ended without using it


class UnavailableScope(ScopeState):
    """A scope that cannot be used this turn: the activity lacks its id (MissingIdError on every use),
    or, with ``missing=None``, the scope was not enabled (UnknownScopeError)."""

    __slots__ = ("_missing",)

    def __init__(self, name: str, missing: str | None) -> None:
        super().__init__(name, None, {})
        self._missing = missing
        self.closed = True  # keeps every fast path off: all access goes through _node, which raises

    def __repr__(self) -> str:
        reason = f"no {self._missing}" if self._missing else "not enabled"
        return f"<ScopeState {self.name} unavailable: {reason}>"

    def _node(self, parts: Path, path: str, create: bool) -> dict[str, Any] | None:
        if self._missing is None:
            raise UnknownScopeError(self.name, (), f"{self.name}.{path}" if path else None, disabled=True)
        raise MissingIdError(self.name, self._missing)


class UnreadableScope(ScopeState):
    """A scope whose stored document could not be read this turn (corrupt, or an encrypted field that does
    not decrypt): every use raises that error again. Nothing is written to its document."""

    __slots__ = ("_error",)

    def __init__(self, name: str, error: Exception) -> None:
        super().__init__(name, None, {})
        self._error = error
        self.closed = True  # keeps every fast path off: all access goes through _node, which raises

    def __repr__(self) -> str:
        return f"<ScopeState {self.name} unreadable: {type(self._error).__name__}>"

    def _node(self, parts: Path, path: str, create: bool) -> dict[str, Any] | None:
        raise self._error
