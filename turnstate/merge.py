"""Three-way, field-level merge of a scope document, used when a commit loses the ETag race.

``base`` is the document as this turn loaded it, ``ours`` is this turn's result, ``theirs`` is what is
stored now. A field changed on one side only takes that side. A field changed on both sides follows the
policy declared for its path:

* ``"last"`` (default): this turn wins (it commits last).
* ``"first"``: the stored value wins.
* ``"sum"``: numbers add both sides' changes: ``theirs + (ours - base)``.
* ``"union"``: lists keep both sides' additions and drop what either side removed.
* ``"max"``: the larger value.
* ``"raise"``: :class:`~turnstate.errors.MergeConflictError` reaches the handler's caller.
* a callable ``f(base, ours, theirs) -> value`` (absent values are passed as :data:`ABSENT`; return
  ``ABSENT`` to delete the field).

Values changed through ``incr`` merge as deltas whatever the policy, so concurrent increments all count.
Objects changed on both sides merge field by field, unless a policy is declared for the object's own path,
which then treats it as one value. Patterns are full paths (``"conversation.incident.owner"``) where ``*``
matches one segment and a trailing ``**`` matches any depth.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

from turnstate.paths import Path, matches, parse

PolicyName = Literal["last", "first", "sum", "union", "max", "raise"]
MergeFunction = Callable[[Any, Any, Any], Any]
Policy = PolicyName | MergeFunction

_NAMES = ("last", "first", "sum", "union", "max", "raise")


class _Absent:
    __slots__ = ()

    def __repr__(self) -> str:
        return "ABSENT"


ABSENT: Any = _Absent()
"""Stands for a field that does not exist on one side of a merge."""


class MergePolicies:
    """Merge policies by path pattern; the most specific pattern wins (fewest wildcards, then longest)."""

    __slots__ = ("_default", "_rules")

    def __init__(self, rules: Mapping[str, Policy] | None = None, default: Policy = "last") -> None:
        self._default = _check_policy("default", default)
        compiled = []
        for pattern, policy in (rules or {}).items():
            parts = parse(pattern)
            if "**" in parts[:-1]:
                raise ValueError(f"merge pattern {pattern!r}: '**' is only allowed as the last segment")
            if len(parts) < 2:
                raise ValueError(
                    f"merge pattern {pattern!r} must start with a scope name, e.g. 'conversation.x'"
                )
            wild = sum(p in ("*", "**") for p in parts)
            compiled.append(((wild, -len(parts)), parts, _check_policy(pattern, policy)))
        compiled.sort(key=lambda item: item[0])
        self._rules: list[tuple[Path, Policy]] = [(parts, policy) for _, parts, policy in compiled]

    def explicit(self, path: Path) -> Policy | None:
        """The policy declared for ``path`` (scope first), or None."""
        for parts, policy in self._rules:
            if matches(parts, path):
                return policy
        return None

    def for_path(self, path: Path) -> Policy:
        """The policy for ``path``, falling back to the default."""
        policy = self.explicit(path)
        return self._default if policy is None else policy


def _check_policy(where: str, policy: Any) -> Policy:
    if callable(policy) or policy in _NAMES:
        return policy  # type: ignore[no-any-return]
    raise ValueError(
        f"merge policy for {where!r} must be one of {', '.join(_NAMES)} or a callable, got {policy!r}"
    )


class MergeResult:
    """The merged fields, the paths that conflicted under "raise", and how many fields were reconciled."""

    __slots__ = ("conflicts", "data", "resolved")

    def __init__(self, data: dict[str, Any], conflicts: list[str], resolved: int) -> None:
        self.data = data
        self.conflicts = conflicts
        self.resolved = resolved


def merge(
    scope: str,
    base: dict[str, Any],
    ours: dict[str, Any],
    theirs: dict[str, Any],
    policies: MergePolicies,
    deltas: Mapping[Path, int | float] | None = None,
) -> MergeResult:
    """Merge ``ours`` onto ``theirs`` relative to ``base``; inputs are left unchanged."""
    state = _Merge(policies, deltas or {})
    data = state.merge_dict((scope,), base, ours, theirs)
    return MergeResult(data, state.conflicts, state.resolved)


class _Merge:
    __slots__ = ("conflicts", "delta_paths", "deltas", "policies", "resolved")

    def __init__(self, policies: MergePolicies, deltas: Mapping[Path, int | float]) -> None:
        self.policies = policies
        self.deltas = deltas
        # every path that holds an increment or contains one: equal values there are not agreement
        self.delta_paths = {path[:i] for path in deltas for i in range(1, len(path) + 1)}
        self.conflicts: list[str] = []
        self.resolved = 0

    def merge_dict(
        self, prefix: Path, base: dict[str, Any], ours: dict[str, Any], theirs: dict[str, Any]
    ) -> dict[str, Any]:
        result = dict(theirs)
        for name in {**base, **ours}:
            b = base.get(name, ABSENT)
            o = ours.get(name, ABSENT)
            t = theirs.get(name, ABSENT)
            if _same(o, b):
                continue  # we did not change it: theirs stands
            if _same(o, t) and not self.accumulates((*prefix, name)):
                continue  # both sides made the same change
            # only we changed it, or both did
            value = o if _same(t, b) else self.both_changed((*prefix, name), b, o, t)
            if value is ABSENT:
                result.pop(name, None)
            else:
                result[name] = value
        return result

    def accumulates(self, path: Path) -> bool:
        """Whether equal changes on both sides still add up here (increments, "sum", custom functions)."""
        if path[1:] in self.delta_paths:
            return True
        policy = self.policies.explicit(path)
        return policy == "sum" or callable(policy)

    def both_changed(self, path: Path, b: Any, o: Any, t: Any) -> Any:
        self.resolved += 1
        delta = self.deltas.get(path[1:])
        base_number = 0 if b is ABSENT or b is None else b
        if delta is not None and _is_number(o) and _is_number(base_number) and o == base_number + delta:
            return (t if _is_number(t) else 0) + delta
        policy = self.policies.explicit(path)
        if policy is None:
            if type(o) is dict and type(t) is dict:
                return self.merge_dict(path, b if type(b) is dict else {}, o, t)
            policy = self.policies.for_path(path)
        if callable(policy):
            return policy(b, o, t)
        if policy == "last":
            return o
        if policy == "first":
            return t
        if policy == "raise":
            self.conflicts.append(".".join(path))
            return o
        if policy == "sum" and _is_number(o) and _is_number(t):
            return t + (o - (b if _is_number(b) else 0))
        if policy == "max" and o is not ABSENT and t is not ABSENT:
            try:
                return max(o, t)
            except TypeError:
                return o
        if policy == "union" and type(o) is list and type(t) is list:
            before = b if type(b) is list else []
            removed = [x for x in before if x not in o]
            kept = [x for x in t if x not in removed]
            return kept + [x for x in o if x not in before and x not in kept]
        return o  # the policy does not apply to these value types: the later writer wins


def _is_number(value: Any) -> bool:
    return type(value) in (int, float)


def _same(a: Any, b: Any) -> bool:
    return a is b or (type(a) is type(b) and a == b)
