"""Bringing a bot's existing botbuilder state into a turnstate storage.

BotBuilderStorage uses botbuilder's keys as they are (``{channel}/conversations/{id}``,
``{channel}/users/{id}``, ``{channel}/conversations/{id}/users/{id}``), so a bot keeps its users' state by
copying its old items once, under the same keys, and then constructing its ``ConversationState`` and
``UserState`` over ``BotBuilderStorage``::

    report = await import_botbuilder_items(bridge, json.load(open("memory-dump.json")))
    report = await import_botbuilder_items(bridge, container.query_items("SELECT * FROM c", ...))

Sources: a mapping of key to item, as botbuilder's MemoryStorage keeps it (``memory_storage.memory``, or
that dict saved with ``jsonpickle.encode`` / ``json.dump`` and loaded back), or an iterable of
CosmosDbPartitionedStorage items ``{"id", "realId", "document", ...}`` (the real key is ``realId``; ``id``
is botbuilder's escaped and possibly truncated form). Old ``e_tag`` values are dropped: the turnstate
storage issues its own. TTL and field encryption of the bridge apply as on any write.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from jsonpickle.unpickler import Unpickler

from turnstate.errors import CorruptDocumentError, PreconditionFailedError
from turnstate.integrations.botbuilder.storage import BotBuilderStorage
from turnstate.storage.base import ANY_ETAG, WriteItem


@dataclass
class ImportReport:
    """Keys copied, and keys left alone because the target already held them (``overwrite=False``)."""

    imported: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def _items(source: Mapping[str, Any] | Iterable[Mapping[str, Any]]) -> Iterable[tuple[str, Any]]:
    if isinstance(source, Mapping):
        for key, item in source.items():
            # a dump holds items as jsonpickle flattened them; live MemoryStorage items restore unchanged
            yield key, Unpickler().restore(item) if isinstance(item, dict) else item
        return
    for number, doc in enumerate(source):
        real_id = doc.get("realId") if isinstance(doc, Mapping) else None
        if not isinstance(real_id, str) or not isinstance(doc.get("document"), dict):
            where = f"item {doc.get('id')!r}" if isinstance(doc, Mapping) else f"entry #{number}"
            raise CorruptDocumentError(
                str(real_id or f"#{number}"),
                f"{where} is not a CosmosDbPartitionedStorage item: it needs a 'realId' string and a "
                "'document' object",
            )
        yield real_id, Unpickler().restore(dict(doc["document"]))


async def import_botbuilder_items(
    bridge: BotBuilderStorage,
    source: Mapping[str, Any] | Iterable[Mapping[str, Any]],
    *,
    overwrite: bool = False,
) -> ImportReport:
    """Copy botbuilder items into ``bridge.storage`` under their own keys, one key per write.

    Keys the target already holds are skipped (reported) unless ``overwrite``. Safe to run again: a
    re-run skips what the first copied.
    """
    report = ImportReport()
    for key, item in _items(source):
        write = WriteItem(bridge.encode(key, item), ANY_ETAG if overwrite else None, bridge.ttl_for(key))
        try:
            await bridge.storage.write({key: write})
        except PreconditionFailedError:
            report.skipped.append(key)
            continue
        report.imported.append(key)
    return report
