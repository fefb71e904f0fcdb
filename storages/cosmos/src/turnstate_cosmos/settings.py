"""The container settings CosmosStorage relies on: partition key, indexing policy, default TTL."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

PARTITION_KEY_PATH = "/id"
KEY_INDEX_PATH = "/key/?"


def indexing_policy() -> dict[str, Any]:
    """The policy of containers the storage creates: only the stored key is indexed (for ``list_keys``).

    Reads and writes address items by id, which needs no index; leaving the value and the rest out of
    the index keeps every write's request charge down.
    """
    return {
        "indexingMode": "consistent",
        "automatic": True,
        "includedPaths": [{"path": KEY_INDEX_PATH}],
        "excludedPaths": [{"path": "/*"}],
    }


@dataclass(frozen=True, slots=True)
class ContainerSettings:
    """A container's settings as Cosmos DB reports them (see ``CosmosStorage.describe``).

    ``default_ttl``: None when TTL is off (Cosmos DB never deletes items by their ``ttl``), -1 when items
    expire by their own ``ttl`` only, otherwise the seconds after which an item without one expires.
    ``indexing_policy``: the whole policy, as reported.
    """

    database: str
    container: str
    partition_key_paths: tuple[str, ...]
    default_ttl: int | None
    indexing_mode: str
    included_paths: tuple[str, ...]
    excluded_paths: tuple[str, ...]
    indexing_policy: Mapping[str, Any]

    @property
    def native_expiry(self) -> bool:
        """Cosmos DB deletes expired items by their ``ttl`` in this container."""
        return self.default_ttl is not None

    @property
    def indexes_only_key(self) -> bool:
        """The indexing policy is the one the storage creates containers with: only ``/key/?``."""
        return (
            self.indexing_mode == "consistent"
            and self.included_paths == (KEY_INDEX_PATH,)
            and "/*" in self.excluded_paths
        )

    @classmethod
    def from_properties(cls, database: str, properties: Mapping[str, Any]) -> ContainerSettings:
        """Settings from the container properties the SDK returns (``ContainerProxy.read()``)."""
        policy = properties.get("indexingPolicy")
        policy = copy.deepcopy(dict(policy)) if isinstance(policy, Mapping) else {}
        partition_key = properties.get("partitionKey")
        paths = partition_key.get("paths") if isinstance(partition_key, Mapping) else None
        ttl = properties.get("defaultTtl")
        return cls(
            database=database,
            container=str(properties.get("id", "")),
            partition_key_paths=tuple(str(path) for path in paths or ()),
            default_ttl=ttl if isinstance(ttl, int) and not isinstance(ttl, bool) else None,
            indexing_mode=str(policy.get("indexingMode", "consistent")).lower(),
            included_paths=_paths(policy.get("includedPaths")),
            excluded_paths=_paths(policy.get("excludedPaths")),
            indexing_policy=policy,
        )


def _paths(entries: object) -> tuple[str, ...]:
    if not isinstance(entries, list):
        return ()
    return tuple(str(entry["path"]) for entry in entries if isinstance(entry, Mapping) and "path" in entry)
