"""The state path grammar, owned here and nowhere else.

A path is segments separated by ``.``: ``"conversation.incident.owner"``. Inside a segment, ``\\.`` stands
for a literal dot and ``\\\\`` for a literal backslash, so any field name can be addressed:
``join("user", "settings", "a.b")`` gives ``"user.settings.a\\.b"``. Empty segments are errors.
"""

from __future__ import annotations

from turnstate.errors import PathError

Path = tuple[str, ...]

_cache: dict[str, Path] = {}
_CACHE_LIMIT = 4096


def parse(path: str) -> Path:
    """Split a path into its segments, honouring escapes; raise PathError if it is malformed."""
    parts = _cache.get(path)
    if parts is not None:
        return parts
    if not isinstance(path, str):
        raise PathError(repr(path), f"a path is a str, got {type(path).__name__}")
    parts = tuple(path.split(".")) if "\\" not in path else _parse_escaped(path)
    if "" in parts:
        raise PathError(
            path, "empty segment (leading, trailing or doubled '.'); escape a literal dot as '\\.'"
        )
    if len(_cache) >= _CACHE_LIMIT:
        _cache.clear()
    _cache[path] = parts
    return parts


def _parse_escaped(path: str) -> Path:
    parts: list[str] = []
    current: list[str] = []
    chars = iter(path)
    for ch in chars:
        if ch == "\\":
            nxt = next(chars, None)
            if nxt not in (".", "\\"):
                raise PathError(path, "'\\' must be followed by '.' or '\\'")
            current.append(nxt)
        elif ch == ".":
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return tuple(parts)


def escape(segment: str) -> str:
    """Escape one field name so it is a single path segment."""
    return segment.replace("\\", "\\\\").replace(".", "\\.")


def join(*segments: str) -> str:
    """Build a path from raw field names."""
    return ".".join(escape(s) for s in segments)


def matches(pattern: Path, path: Path) -> bool:
    """Whether ``path`` matches ``pattern``: ``*`` stands for one segment, a trailing ``**`` for any depth."""
    if pattern and pattern[-1] == "**":
        head = pattern[:-1]
        return len(path) >= len(head) and all(p in ("*", s) for p, s in zip(head, path, strict=False))
    return len(pattern) == len(path) and all(p in ("*", s) for p, s in zip(pattern, path, strict=True))
