"""Which fields of a scope are encrypted: the declared paths, compiled to one tree per scope.

Declared paths are state paths with the scope first (``"user.email"``, ``"conversation.incident.owner"``).
A ``*`` segment matches exactly one field name at that level; a path that names an object encrypts the whole
object as one envelope (that is how to encrypt a subtree; ``**`` is not supported, and a field literally
named ``*`` cannot be declared). Segments address object members only, never list items.

A declared path also guards the levels it goes through. Where it expects an object with fields (``a.b``
for ``a.b.*``, ``a`` and ``a.x`` for ``a.*.c``) and finds any other value but null (a string, number,
bool, list, or an object with a ``"$enc"`` member), that value is encrypted whole as one envelope for its
own path, so nothing under a declared path is ever stored in plaintext, whatever its shape. At load an
envelope there decrypts to that value, and plaintext there is refused like plaintext at a declared field.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from turnstate.envelope import ENVELOPE_MARKER, is_envelope
from turnstate.errors import EncryptionError
from turnstate.paths import parse

Field = tuple[str, tuple[str, ...]]
"""A field's name in the object holding it, and its path from the scope."""

Group = tuple[dict[str, Any], Sequence[Field]]
"""An object holding declared fields, and those fields."""


class _Node:
    """One level of the compiled paths: literal children, a ``*`` child, or the end of a declared path."""

    __slots__ = ("children", "star", "terminal")

    def __init__(self) -> None:
        self.children: dict[str, _Node] = {}
        self.star: _Node | None = None
        self.terminal = False


def _insert(node: _Node, segments: Sequence[str]) -> None:
    for segment in segments:
        if node.terminal:
            return  # an ancestor is encrypted as a whole already
        if segment == "*":
            if node.star is None:
                node.star = _Node()
            node = node.star
        else:
            node = node.children.setdefault(segment, _Node())
    node.terminal = True
    node.children = {}
    node.star = None


def _merge(a: _Node | None, b: _Node | None) -> _Node | None:
    if a is None or b is None:
        return a or b
    merged = _Node()
    if a.terminal or b.terminal:
        merged.terminal = True
        return merged
    for segment in a.children.keys() | b.children.keys():
        child = _merge(a.children.get(segment), b.children.get(segment))
        if child is not None:
            merged.children[segment] = child
    merged.star = _merge(a.star, b.star)
    return merged


def _normalize(node: _Node) -> None:
    """Fold the ``*`` child into each literal child, so one lookup per field name finds every path."""
    if node.star is not None:
        node.children = {seg: _merge(child, node.star) or child for seg, child in node.children.items()}
    for child in node.children.values():
        _normalize(child)
    if node.star is not None:
        _normalize(node.star)


def _check(pattern: str) -> tuple[str, ...]:
    segments = parse(pattern)
    if len(segments) < 2:
        raise EncryptionError(
            f"encrypted path {pattern!r} must name a scope and a field, like 'user.email'; "
            "a whole scope cannot be one envelope"
        )
    if segments[0] == "*":
        raise EncryptionError(f"encrypted path {pattern!r}: the scope must be named, not '*'")
    if "**" in segments:
        raise EncryptionError(
            f"encrypted path {pattern!r}: '**' is not supported; name the object itself to encrypt "
            "its whole subtree as one value"
        )
    return segments


def _walk(
    node: _Node, data: dict[str, Any], path: tuple[str, ...], groups: list[Group], copying: bool
) -> dict[str, Any] | None:
    """Append to ``groups`` each object under ``data`` holding matched fields, with those fields; return
    the object that holds them at this level (None if none does).

    ``copying`` (on the way to storage): the objects along matched paths are copied, ``data`` is left
    untouched, and an object with the envelope marker where a declared path goes through counts as a
    value to seal whole. Otherwise (stored data) the objects are ``data``'s own, and only an envelope's
    exact shape counts as sealed there. A level a declared path goes through that holds a value other
    than an object or null is listed as a field (see the module doc).
    """
    out: dict[str, Any] | None = None
    names: list[Field] | None = None
    children = node.children
    star = node.star
    # Try the declared names when they are fewer (and there is no '*'), otherwise the data's.
    for seg in children if star is None and len(children) <= len(data) else data:
        child = children.get(seg, star)
        if child is None or seg not in data:
            continue
        if not child.terminal:
            value = data[seg]
            if value.__class__ is dict and (
                ENVELOPE_MARKER not in value or not (copying or is_envelope(value))
            ):
                sub = _walk(child, value, (*path, seg), groups, copying)
                if sub is not None and copying:
                    if out is None:
                        out = dict(data)
                    out[seg] = sub
                continue
            if value is None:
                continue
        if names is None:
            if out is None:
                out = dict(data) if copying else data
            names = []
            groups.append((out, names))
        names.append((seg, (*path, seg)))
    return out


class EncryptedPaths:
    """The declared paths, compiled: which fields of a scope's data are encrypted.

    Raises EncryptionError for a malformed path, naming it.
    """

    __slots__ = ("_roots", "envelope_fields", "flat", "patterns", "scopes")

    def __init__(self, patterns: Iterable[str]) -> None:
        if isinstance(patterns, str):
            raise EncryptionError(f"paths must be a list of paths, got the single string {patterns!r}")
        given: list[str] = []
        roots: dict[str, _Node] = {}
        for pattern in patterns:
            segments = _check(pattern)
            _insert(roots.setdefault(segments[0], _Node()), segments[1:])
            given.append(pattern)
        for root in roots.values():
            _normalize(root)
        self.patterns = tuple(given)
        """The declared paths, as given."""
        self._roots = roots
        self.scopes = frozenset(roots)
        """Names of the scopes that have at least one declared path."""
        self.envelope_fields = {
            scope: frozenset(name for name, child in root.children.items() if child.terminal)
            for scope, root in roots.items()
        }
        """Per scope, its top-level fields declared by name (not by ``*``)."""
        self.flat: dict[str, tuple[Field, ...]] = {
            scope: tuple((name, (name,)) for name in root.children)
            for scope, root in roots.items()
            if root.star is None and all(child.terminal for child in root.children.values())
        }
        """The scopes whose declared fields are all top-level names, with those fields: one group of
        :meth:`select` for any data of that scope, listed once here instead of found by a walk."""

    def select(
        self, scope: str, data: dict[str, Any], *, copying: bool
    ) -> tuple[dict[str, Any], Sequence[Group]]:
        """The declared fields of ``scope`` in ``data``, grouped by the object holding them (a field
        listed may be absent from it), and the data they were found in: a copy of ``data`` along the
        matched paths if ``copying`` (always a new dict), else ``data`` itself."""
        flat = self.flat.get(scope)
        if flat is not None:
            out = data.copy() if copying else data
            return out, ((out, flat),)
        root = self._roots.get(scope)
        if root is None:
            return (data.copy() if copying else data), ()
        groups: list[Group] = []
        found = _walk(root, data, (), groups, copying)
        if not copying:
            return data, groups
        return (data.copy() if found is None else found), groups

    def locate(self, scope: str, path: Sequence[str]) -> tuple[bool, bool]:
        """(covered, under): covered if ``path`` or an ancestor is a declared field; under if ``path``
        is covered or a declared path goes through it."""
        node = self._roots.get(scope)
        for segment in path:
            if node is None:
                return False, False
            if node.terminal:
                return True, True
            node = node.children.get(segment, node.star)
        if node is None:
            return False, False
        return node.terminal, True
