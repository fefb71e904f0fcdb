"""Counters of what the turn engine did, cheap enough to bump on every turn."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

_NAMES = (
    "turns",
    "commits",
    "writes",
    "conflicts",
    "merges",
    "merge_conflicts",
    "retries",
    "gave_up",
    "duplicates",
    "reruns",
    "discards",
)


class Stats(Mapping[str, int]):
    """Read like a dict (``stats["conflicts"]``, ``dict(stats)``); the engine bumps attributes.

    turns loaded; commits that wrote; documents written; conflicts (failed preconditions); merges of a
    document onto a newer one; merge_conflicts under the "raise" policy; retries; gave_up after the last
    attempt; duplicates (redeliveries detected); reruns (re-run mode); discards (failed turns).
    """

    __slots__ = _NAMES

    turns: int
    commits: int
    writes: int
    conflicts: int
    merges: int
    merge_conflicts: int
    retries: int
    gave_up: int
    duplicates: int
    reruns: int
    discards: int

    def __init__(self) -> None:
        for name in _NAMES:
            setattr(self, name, 0)

    def __getitem__(self, name: str) -> int:
        if name not in _NAMES:
            raise KeyError(name)
        value: int = getattr(self, name)
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(_NAMES)

    def __len__(self) -> int:
        return len(_NAMES)

    def __repr__(self) -> str:
        return "Stats(" + ", ".join(f"{n}={getattr(self, n)}" for n in _NAMES) + ")"
