"""BlobStorage: turnstate items as block blobs in one Azure Blob Storage container."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from typing import Any, ClassVar

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceExistsError
from azure.storage.blob import BlobProperties, ContentSettings
from azure.storage.blob.aio import BlobServiceClient, ContainerClient

from turnstate.errors import CorruptDocumentError, InvalidKeyError, StorageError
from turnstate.storage.base import (
    ANY_ETAG,
    Capabilities,
    Storage,
    StoredItem,
    WriteItem,
    check_keys,
    check_write,
    settle_writes,
)
from turnstate_blob._blobs import (
    EXPIRES_FIELD,
    KEY_BYTES_FIELD,
    LAYOUT,
    LAYOUT_FIELD,
    Blob,
    blob_of,
    expiry,
    hashed_key,
    is_ours,
    key_length,
    live,
    public_etag,
    split_etag,
    stored_value,
)
from turnstate_blob._container import target
from turnstate_blob._errors import NATIVE_ERRORS, BlobErrors, Refused, blob_missing, refused_precondition
from turnstate_blob._names import HASHED_PREFIX, blob_name, is_hashed, key_of, name_prefix

__all__ = ["EXPIRES_FIELD", "KEY_BYTES_FIELD", "LAYOUT", "LAYOUT_FIELD", "BlobStorage"]

_CREATE_ATTEMPTS = 3
_JSON = ContentSettings(content_type="application/json")


class BlobStorage(Storage):
    """Items as block blobs in one container, one blob per key.

    Give the container name and one way to reach the account:

    * ``connection_string=`` (an account key or SAS connection string, or Azurite's);
    * ``account_url=`` with ``credential=`` (the account key, an ``AzureNamedKeyCredential``, an
      ``AzureSasCredential`` or an async token credential), or with ``sas_token=``, or with neither, in
      which case ``azure.identity.aio.DefaultAzureCredential`` is used
      (``pip install turnstate-blob[identity]``);
    * ``service_client=`` (an ``azure.storage.blob.aio.BlobServiceClient``) or ``container_client=``
      (a ``ContainerClient``, which names the container itself): used as is and never closed.

    A storage that built its own client (and credential) closes them in :meth:`aclose`. Other keyword
    arguments go to ``BlobServiceClient`` (for example ``retry_total``, ``connection_timeout``,
    ``read_timeout``). ``create_container=True`` creates the container on first use; otherwise it must
    exist, or be created with :meth:`create_container`.

    Every ``read`` is one download per key and every ``write`` one upload per key, all concurrent.

    Differences from the base contract: a multi-key write is not atomic (each key is written on its own;
    see ``PreconditionFailedError.written``). An unconditional (``"*"``) write replaces whatever blob has
    the name, even one turnstate did not write. Expired blobs read as absent by the expiry in their
    metadata (``clock`` gives the current epoch time); :meth:`purge_expired` deletes them.
    """

    capabilities: ClassVar[Capabilities] = Capabilities(
        atomic_batch=False, native_ttl=False, list_keys=True, shared=True
    )

    def __init__(
        self,
        container: str | None = None,
        *,
        connection_string: str | None = None,
        account_url: str | None = None,
        credential: Any = None,
        sas_token: str | None = None,
        service_client: BlobServiceClient | None = None,
        container_client: ContainerClient | None = None,
        create_container: bool = False,
        clock: Callable[[], float] = time.time,
        **client_options: Any,
    ) -> None:
        found = target(
            container,
            connection_string=connection_string,
            account_url=account_url,
            credential=credential,
            sas_token=sas_token,
            service_client=service_client,
            container_client=container_client,
            options=client_options,
        )
        self._container = found.client
        self._where = found.where
        self._owned = found.owned  # clients and credentials this storage made, closed in aclose
        self._errors = BlobErrors(found.where)
        self._clock = clock
        self._closed = False
        self._ready = not create_container
        self._setup_lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"BlobStorage({self._where})"

    @property
    def container_client(self) -> ContainerClient:
        """The SDK's client for the container (for inspection and tools; owned by this storage)."""
        return self._container

    async def create_container(self) -> bool:
        """Create the container; False when it already existed. Either way it exists afterwards."""
        self._check_open()
        try:
            await self._container.create_container()
        except ResourceExistsError:
            return False
        except NATIVE_ERRORS as exc:
            raise self._errors.for_call("create the container", [], exc) from exc
        return True

    # -- the protocol ----------------------------------------------------------------------------------

    async def read(self, keys: Collection[str]) -> dict[str, StoredItem]:
        check_keys(keys)
        if not keys:
            return {}
        unique = list(dict.fromkeys(keys))
        names = [blob_name(key) for key in unique]
        await self._open()
        blobs = await asyncio.gather(
            *(self._download(key, name) for key, name in zip(unique, names, strict=True)),
            return_exceptions=True,
        )
        now = self._clock()
        found: dict[str, StoredItem] = {}
        for key, name, blob in zip(unique, names, blobs, strict=True):
            if isinstance(blob, BaseException):
                raise blob
            if blob is None:
                continue
            value, expires_at = stored_value(key, name, blob, self._where)
            if live(expires_at, now):
                found[key] = StoredItem(value, public_etag(blob.etag, expires_at), expires_at)
        return found

    async def write(self, items: Mapping[str, WriteItem]) -> dict[str, str]:
        if not items:
            return {}
        check_write(items)
        now = self._clock()
        uploads = {key: blob_of(key, item, now) for key, item in items.items()}
        await self._open()
        keys = list(items)
        results = await asyncio.gather(
            *(self._write_one(key, items[key].if_match, *uploads[key]) for key in keys),
            return_exceptions=True,
        )
        return settle_writes(
            (key, None if isinstance(result, Refused) else result)
            for key, result in zip(keys, results, strict=True)
        )

    async def delete(self, keys: Collection[str]) -> None:
        check_keys(keys)
        if not keys:
            return
        unique = list(dict.fromkeys(keys))
        await self._open()
        results = await asyncio.gather(
            *(self._delete_one(key, blob_name(key)) for key in unique), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def list_keys(self, prefix: str = "") -> AsyncIterator[str]:
        """Yield live keys starting with ``prefix``: lists the names it escapes to, and hashed names."""
        if not isinstance(prefix, str):
            raise InvalidKeyError(repr(prefix), f"a key prefix is a str, got {type(prefix).__name__}")
        await self._open()
        starts = name_prefix(prefix)
        listings = [starts] if not starts or HASHED_PREFIX.startswith(starts) else [starts, HASHED_PREFIX]
        now = self._clock()
        seen: set[str] = set()
        for listing in listings:
            async for properties in self._listed(listing, [prefix]):
                key = await self._key_of_listed(properties)
                if key is None or key in seen or not key.startswith(prefix):
                    continue
                seen.add(key)
                if live(expiry(key, properties.metadata or {}, self._where), now):
                    yield key

    async def purge_expired(self) -> int:
        """Delete every blob of ours whose expiry has passed; return how many were deleted.

        Lists the container with metadata (one request per 5,000 blobs) and deletes each expired blob on
        the condition that it is still the version listed, so a blob rewritten meanwhile is kept.
        Blobs turnstate did not write are left alone.
        """
        await self._open()
        now = self._clock()
        deleted = 0
        async for properties in self._listed("", []):
            metadata = properties.metadata or {}
            if not is_ours(metadata) or EXPIRES_FIELD not in metadata:
                continue
            try:
                expires_at = float(metadata[EXPIRES_FIELD])
            except ValueError:
                continue
            if live(expires_at, now):
                continue
            try:
                await self._container.delete_blob(
                    properties.name, etag=properties.etag, match_condition=MatchConditions.IfNotModified
                )
            except HttpResponseError as exc:
                if exc.status_code in (404, 412):
                    continue  # deleted or rewritten since it was listed
                raise self._errors.for_call("purge expired blobs", [properties.name], exc) from exc
            except NATIVE_ERRORS as exc:
                raise self._errors.for_call("purge expired blobs", [properties.name], exc) from exc
            deleted += 1
        return deleted

    async def aclose(self) -> None:
        """Close the client and credential if this storage made them; ones passed in stay open. Idempotent."""
        if self._closed:
            return
        self._closed = True
        for owned in self._owned:
            await owned.close()

    # -- internals -------------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise StorageError(f"{self!r} was closed with aclose(); create a new storage to use it again")

    async def _open(self) -> None:
        self._check_open()
        if self._ready:
            return
        async with self._setup_lock:
            if not self._ready:
                await self.create_container()
                self._ready = True

    async def _listed(self, starts: str, keys: Sequence[str]) -> AsyncIterator[BlobProperties]:
        pages = self._container.list_blobs(name_starts_with=starts or None, include=["metadata"])
        while True:
            try:
                properties = await anext(pages)
            except StopAsyncIteration:
                return
            except NATIVE_ERRORS as exc:
                raise self._errors.for_call("list keys under", keys, exc) from exc
            yield properties

    async def _key_of_listed(self, properties: BlobProperties) -> str | None:
        """The key a listed blob of ours stores, or None for a blob that is not ours."""
        metadata = properties.metadata or {}
        if not is_ours(metadata):
            return None
        name = properties.name
        if not is_hashed(name):
            try:
                return key_of(name)
            except ValueError:
                raise CorruptDocumentError(
                    repr(name), "the blob's name is not the escaping of any key", self._where
                ) from None
        length = key_length(repr(name), metadata, self._where)
        try:
            head = await self._container.download_blob(name, offset=0, length=length)
            raw = await head.readall()
        except HttpResponseError as exc:
            if exc.status_code == 404:
                return None  # deleted since it was listed
            raise self._errors.for_call("list keys under", [name], exc) from exc
        except NATIVE_ERRORS as exc:
            raise self._errors.for_call("list keys under", [name], exc) from exc
        return hashed_key(name, raw, self._where)

    async def _download(self, key: str, name: str) -> Blob | None:
        """The blob under ``name``, or None when there is none."""
        try:
            downloader = await self._container.download_blob(name)
            content = await downloader.readall()
        except HttpResponseError as exc:
            if blob_missing(exc):
                return None
            raise self._errors.for_call("read", [key], exc) from exc
        except NATIVE_ERRORS as exc:
            raise self._errors.for_call("read", [key], exc) from exc
        properties = downloader.properties
        return Blob(content, properties.etag, properties.metadata or {})

    async def _write_one(
        self, key: str, if_match: str | None, content: bytes, metadata: dict[str, str]
    ) -> str:
        name = blob_name(key)
        if if_match == ANY_ETAG:
            etag = await self._upload(key, name, content, metadata, overwrite=True)
        elif if_match is None:
            etag = await self._create(key, name, content, metadata)
        else:
            stored_etag, expires_at = split_etag(if_match)
            if not live(expires_at, self._clock()):
                raise Refused(key)
            etag = await self._upload(key, name, content, metadata, etag=stored_etag)
        return public_etag(etag, expiry(key, metadata, self._where))

    async def _upload(
        self,
        key: str,
        name: str,
        content: bytes,
        metadata: dict[str, str],
        *,
        overwrite: bool = False,
        etag: str | None = None,
    ) -> str:
        """One Put Blob: unconditional, create-only (``If-None-Match: *``) or ``If-Match: etag``."""
        options: dict[str, Any] = {}
        if etag is not None:
            options = {"etag": etag, "match_condition": MatchConditions.IfNotModified}
        try:
            saved = await self._container.get_blob_client(name).upload_blob(
                content,
                length=len(content),
                overwrite=overwrite or etag is not None,
                metadata=metadata,
                content_settings=_JSON,
                **options,
            )
        except HttpResponseError as exc:
            if refused_precondition(
                exc, create_only=not overwrite and etag is None, if_match=etag is not None
            ):
                raise Refused(key) from exc
            raise self._errors.for_call("write", [key], exc) from exc
        except NATIVE_ERRORS as exc:
            raise self._errors.for_call("write", [key], exc) from exc
        new_etag = saved.get("etag") if isinstance(saved, dict) else None
        if not isinstance(new_etag, str) or not new_etag:
            raise StorageError(f"Azure Blob Storage ({self._where}) wrote {key!r} but returned no ETag")
        return new_etag

    async def _create(self, key: str, name: str, content: bytes, metadata: dict[str, str]) -> str:
        """Create-only; a blob of ours that has expired but is still stored is replaced on its ETag."""
        for _ in range(_CREATE_ATTEMPTS):
            try:
                return await self._upload(key, name, content, metadata)
            except Refused:
                pass
            found = await self._download(key, name)
            if found is None:
                continue  # deleted since the create was refused: try again
            _, expires_at = stored_value(key, name, found, self._where)
            if live(expires_at, self._clock()):
                raise Refused(key)
            return await self._upload(key, name, content, metadata, etag=found.etag)
        raise Refused(key)

    async def _delete_one(self, key: str, name: str) -> None:
        try:
            await self._container.delete_blob(name)
        except HttpResponseError as exc:
            if not blob_missing(exc):
                raise self._errors.for_call("delete", [key], exc) from exc
        except NATIVE_ERRORS as exc:
            raise self._errors.for_call("delete", [key], exc) from exc
