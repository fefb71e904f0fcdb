"""What a handler sees as ``ctx.state``: one :class:`ScopeState` per scope, addressed by path."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar, overload

import msgspec

from turnstate.document import MAX_DEPTH
from turnstate.errors import (
    MissingIdError,
    PathError,
    StateTypeError,
    StateValueError,
    TurnClosedError,
    UnknownScopeError,
)
from turnstate.paths import Path, join, parse
from turnstate.scopes import TEMP
from turnstate.secrets import MIN_LENGTH as SECRET_MIN_LENGTH

T = TypeVar("T")

ValueGuard = Callable[[str, Path, Any], None]
"""Called by set() with (scope name, path, encoded value); raises to refuse the value."""


def _describe(value: Any) -> str:
    return "null" if value is None else f"a {type(value).__name__}"


_BINARY = (bytes, bytearray, memoryview)
"""Left as they are by msgspec.to_builtins (which would otherwise turn them into base64 text silently)."""


def _as_decoded(value: Any, scope: str, path: str, room: int) -> Any:
    """``value`` (fresh from msgspec.to_builtins) exactly as decoding its JSON would give it back: tuples
    become lists; a non-finite float or binary data, which JSON cannot hold, or objects and lists nested
    more than ``room`` levels deep raise StateValueError."""
    cls = value.__class__
    if cls is float:
        if not math.isfinite(value):
            where = f"{scope}.{path}"
            raise StateValueError(where, f"{value!r} has no JSON form; store None or a string instead")
    elif cls is dict:
        if room <= 0:
            raise _too_deep(scope, path)
        for name, item in value.items():
            value[name] = _as_decoded(item, scope, path, room - 1)
    elif cls is list:
        if room <= 0:
            raise _too_deep(scope, path)
        for i, item in enumerate(value):
            value[i] = _as_decoded(item, scope, path, room - 1)
    elif cls is tuple:
        if room <= 0:
            raise _too_deep(scope, path)
        return [_as_decoded(item, scope, path, room - 1) for item in value]
    elif cls in _BINARY:
        raise StateValueError(
            f"{scope}.{path}",
            f"{cls.__name__} has no JSON form. To store binary data, store it as text yourself, for example "
            f"base64.b64encode(data).decode('ascii'), and read it back as bytes with get({path!r}, bytes)",
        )
    return value


def _too_deep(scope: str, path: str) -> StateValueError:
    return StateValueError(
        f"{scope}.{path}",
        f"nested too deeply: objects and lists would nest more than {MAX_DEPTH} levels deep in the scope "
        f"(a field holding an object is level 1, and each object along the path counts); state holds at "
        f"most {MAX_DEPTH}. Flatten the value, or store its deep part as a JSON string",
    )


def to_storable(value: Any, scope: str, path: str, depth: int = 0) -> Any:
    """Convert a value to its JSON form (dict, list, str, int, float, bool, None) or raise StateValueError.

    The result equals what decoding the stored JSON gives back, so this turn sees what the next one will.
    ``depth``: how many objects the scope holds above the value; with the value's own objects and lists
    they may nest at most :data:`~turnstate.document.MAX_DEPTH` deep.
    """
    cls = value.__class__
    if cls is str or cls is int or cls is bool or value is None:
        return value
    try:
        builtins = msgspec.to_builtins(value, builtin_types=_BINARY, str_keys=True)
    except (TypeError, ValueError, OverflowError) as exc:
        where = f"{scope}.{path}"
        raise StateValueError(where, f"{type(value).__name__} cannot be encoded as JSON ({exc})") from exc
    except RecursionError as exc:
        # converting a value within the depth limit takes a few dozen frames: this one is far deeper
        raise _too_deep(scope, path) from exc
    return _as_decoded(builtins, scope, path, MAX_DEPTH - depth)


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

    __slots__ = ("_closed", "_data", "_deltas", "_guard", "exact", "key", "name", "shaped", "touched")

    def __init__(
        self, name: str, key: str | None, data: dict[str, Any], guard: ValueGuard | None = None
    ) -> None:
        self.name = name
        self.key = key
        self._data = data
        self._deltas: dict[Path, int | float] | None = None  # made by the first incr
        self._closed = False
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
        fields = ", ".join(sorted(self._data)) if not self._closed else "closed"
        return f"<ScopeState {self.name} key={self.key!r} fields=[{fields}]>"

    @property
    def fields(self) -> dict[str, Any]:
        """The live fields, for the turn engine to encode (handlers read and write through get and set)."""
        return self._data

    @property
    def deltas(self) -> dict[Path, int | float] | None:
        """What :meth:`incr` added at each path this turn (None if nothing), merged as sums on conflict."""
        return self._deltas

    def replace(self, data: dict[str, Any]) -> None:
        """Take ``data`` as the fields (a merge's result): changed, and not known to be exact."""
        self._data.clear()
        self._data.update(data)
        self.touched = True
        self.exact = False

    def close(self) -> None:
        """End the scope with its turn: every later use raises TurnClosedError."""
        self._closed = True

    def _where(self, path: str) -> str:
        return f"{self.name}.{path}"

    def _node(self, parts: Path, path: str, create: bool) -> dict[str, Any] | None:
        if self._closed:
            raise TurnClosedError(f"state scope {self.name!r}")
        if create:
            self.touched = True
            if len(parts) > 1:
                self.shaped = True
                if len(parts) > MAX_DEPTH + 1:  # an object for each segment but the last
                    raise _too_deep(self.name, path)
        node = self._data
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
        if path.__class__ is str and (path in _PLAIN or _plain(path)) and not self._closed:
            value = self._data.get(path)  # the common case, one plain field name, needs no parsing
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
        if path.__class__ is str and (path in _PLAIN or _plain(path)) and not self._closed:
            self._data[path] = stored
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
        self._data.clear()
        self.touched = True
        self.shaped = True

    def keys(self) -> list[str]:
        """The top-level field names."""
        self._node(("",), "", False)
        return list(self._data)

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def to_dict(self) -> dict[str, Any]:
        """A deep copy of the scope's fields."""
        self._node(("",), "", False)
        return msgspec.json.decode(msgspec.json.encode(self._data))  # type: ignore[no-any-return]


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
        return dict(self._data)


_CLOSED_TEMP = TempScope(TEMP, None, {})
_CLOSED_TEMP.close()  # stands in for the temp scope of a turn that ended without using it


class UnavailableScope(ScopeState):
    """A scope that cannot be used this turn: the activity lacks its id (MissingIdError on every use),
    or, with ``missing=None``, the scope was not enabled (UnknownScopeError)."""

    __slots__ = ("_missing",)

    def __init__(self, name: str, missing: str | None) -> None:
        super().__init__(name, None, {})
        self._missing = missing
        self._closed = True  # keeps every fast path off: all access goes through _node, which raises

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
        self._closed = True  # keeps every fast path off: all access goes through _node, which raises

    def __repr__(self) -> str:
        return f"<ScopeState {self.name} unreadable: {type(self._error).__name__}>"

    def _node(self, parts: Path, path: str, create: bool) -> dict[str, Any] | None:
        raise self._error


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
            self._temp = _CLOSED_TEMP
        for scope in self._scopes.values():
            scope.close()

    async def save(self) -> None:
        """Commit the changes made so far as a checkpoint; the final commit still happens when the turn ends.

        A checkpoint records progress, not completion: if the turn then fails, a redelivery runs the handler
        again on the checkpointed state with ``resumed`` set.
        """
        if self._saver is None:
            raise TurnClosedError("turn state")
        await self._saver()
