"""Reading state that the Bot Framework SDK or the Microsoft 365 Agents SDK kept in a blob container.

Both SDKs store one block blob per storage key: the blob is named after the key and holds the item as
a JSON object.

* Bot Framework (``botbuilder-azure``'s ``BlobStorage`` for Python) names the blob with the key as it
  is (the Azure SDK URL-encodes it on the wire) and writes the item with jsonpickle, so an item read
  before it was written carries an ``"e_tag"`` field with the ETag it was read at. The JavaScript and
  .NET ``BlobsStorage`` name blobs after the key URL-encoded: pass ``url_encoded_names=True``.
* The Microsoft 365 Agents SDK (``microsoft-agents-storage-blob``) names the blob with the key as it is
  and writes ``json.dumps`` of the item's ``store_item_to_json()``, with no ETag in it.

:func:`read_legacy` yields each of those blobs as (old key, JSON document), so a migration can map the
old keys to turnstate's and write the documents through a ``StateManager`` or a storage.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, NamedTuple
from urllib.parse import unquote

import msgspec
from azure.core.exceptions import HttpResponseError
from azure.storage.blob.aio import ContainerClient

from turnstate.errors import CorruptDocumentError, StorageError
from turnstate_blob._blobs import LAYOUT_FIELD
from turnstate_blob._errors import error_code

LEGACY_ETAG_FIELD = "e_tag"
"""The field Bot Framework keeps an item's ETag in; it is stale once copied, so it is left out."""


class LegacyDocument(NamedTuple):
    """One item of the old layout: the key the SDK stored it under, and the JSON object it holds."""

    key: str
    document: dict[str, Any]


async def read_legacy(
    container: ContainerClient,
    *,
    prefix: str = "",
    url_encoded_names: bool = False,
    batch: int = 16,
) -> AsyncIterator[LegacyDocument]:
    """Yield (old key, JSON document) for every blob in ``container`` written in the SDKs' layout.

    ``prefix`` limits the listing to blob names starting with it. ``url_encoded_names`` decodes each name
    (``%XX`` escapes) into the key, for containers written by the JavaScript or .NET ``BlobsStorage``.
    Bot Framework's ``"e_tag"`` field is removed from the document; everything else is kept as stored
    (jsonpickle's ``"py/object"`` tags included). Blobs written by ``BlobStorage`` (turnstate's layout)
    are skipped, and so are blobs deleted while the listing runs. Blobs are downloaded ``batch`` at a time.

    A blob that is not a JSON object raises ``CorruptDocumentError`` naming it; Azure errors raise
    ``StorageError`` (chained). The container is only read.
    """
    if batch < 1:
        raise ValueError(f"batch must be at least 1, got {batch!r}")
    pending: list[str] = []
    try:
        async for properties in container.list_blobs(name_starts_with=prefix or None, include=["metadata"]):
            if LAYOUT_FIELD in (properties.metadata or {}):
                continue
            pending.append(properties.name)
            if len(pending) >= batch:
                for found in await _download_all(container, pending, url_encoded_names):
                    yield found
                pending = []
        for found in await _download_all(container, pending, url_encoded_names):
            yield found
    except HttpResponseError as exc:
        raise StorageError(
            f"could not read the legacy blobs of container {container.container_name!r}: "
            f"{type(exc).__name__} {exc.status_code} {error_code(exc) or ''}".rstrip()
        ) from exc


async def _download_all(
    container: ContainerClient, names: list[str], url_encoded_names: bool
) -> list[LegacyDocument]:
    contents = await asyncio.gather(*(_download(container, name) for name in names))
    documents: list[LegacyDocument] = []
    for name, content in zip(names, contents, strict=True):
        if content is None:
            continue
        key = unquote(name, errors="strict") if url_encoded_names else name
        try:
            document = msgspec.json.decode(content)
        except (msgspec.DecodeError, UnicodeDecodeError):
            document = None
        if not isinstance(document, dict):
            raise CorruptDocumentError(
                key,
                "the blob is not a JSON object, so it is not an item of the Bot Framework or Agents SDK "
                "layout",
                f"container {container.container_name!r}, blob {name!r}",
            )
        document.pop(LEGACY_ETAG_FIELD, None)
        documents.append(LegacyDocument(key, document))
    return documents


async def _download(container: ContainerClient, name: str) -> bytes | None:
    try:
        downloader = await container.download_blob(name)
        return await downloader.readall()
    except HttpResponseError as exc:
        if exc.status_code == 404:
            return None
        raise
