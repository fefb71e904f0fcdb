"""A MemoryStorage that records the calls made to it, to check how the turn engine uses storage."""

from __future__ import annotations

from collections.abc import Collection, Mapping

from turnstate.storage.base import StoredItem, WriteItem
from turnstate.storage.memory import MemoryStorage


class CountingStorage(MemoryStorage):
    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.reads: list[list[str]] = []
        self.writes: list[dict[str, WriteItem]] = []

    async def read(self, keys: Collection[str]) -> dict[str, StoredItem]:
        self.reads.append(list(keys))
        return await super().read(keys)

    async def write(self, items: Mapping[str, WriteItem]) -> dict[str, str]:
        self.writes.append(dict(items))
        return await super().write(items)
