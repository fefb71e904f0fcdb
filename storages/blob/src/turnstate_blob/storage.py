"""BlobStorage: turnstate items as block blobs in one Azure Blob Storage container."""

from __future__ import annotations

import asyncio
import importlib
import math
import time
from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from typing import Any, ClassVar

import aiohttp
from azure.core import MatchConditions
from azure.core.credentials import AzureSasCredential
from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceExistsError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.storage.blob import BlobProperties, ContentSettings
from azure.storage.blob.aio import BlobServiceClient, ContainerClient

from turnstate.errors import (
    CorruptDocumentError,
    InvalidItemError,
    InvalidKeyError,
    PreconditionFailedError,
    StorageError,
    StorageUnavailableError,
)
from turnstate.storage.base import (
    ANY_ETAG,
    Capabilities,
    Storage,
    StoredItem,
    WriteItem,
    check_keys,
    check_write,
)
from turnstate_blob._names import HASHED_PREFIX, blob_name, is_hashed, key_of, name_prefix

LAYOUT_FIELD = "turnstate"
"""Metadata field that marks a blob as written by BlobStorage; its value is the layout version."""
LAYOUT = "1"
EXPIRES_FIELD = "turnstate_expires_at"
"""Metadata field holding the blob's expiry (Unix seconds, ``repr`` of a float); absent: never expires."""
KEY_BYTES_FIELD = "turnstate_key_bytes"
"""Metadata field of a hashed name: the length of the real key (UTF-8) that starts the blob's content."""

_ETAG_EXPIRY = "~exp:"
_CREATE_ATTEMPTS = 3
_UNAVAILABLE_STATUS = frozenset({408, 500, 502, 503, 504})
_NATIVE_ERRORS = (AzureError, aiohttp.ClientError, TimeoutError, OSError)
_JSON = ContentSettings(content_type="application/json")


class _Failed(Exception):
    """A write's precondition failed for one key (internal; becomes PreconditionFailedError)."""


class _Blob:
    """One of our blobs as read: content, ETag and metadata."""

    __slots__ = ("content", "etag", "metadata")

    def __init__(self, content: bytes, etag: str, metadata: Mapping[str, str]) -> None:
        self.content = content
        self.etag = etag
        self.metadata = metadata


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
        self._clock = clock
        self._create_on_first_use = create_container
        self._closed = False
        self._ready = not create_container
        self._setup_lock = asyncio.Lock()
        self._owned: list[Any] = []  # clients and credentials this storage made, closed in aclose
        sources = [
            name
            for name, value in (
                ("connection_string", connection_string),
                ("account_url", account_url),
                ("service_client", service_client),
                ("container_client", container_client),
            )
            if value is not None
        ]
        if len(sources) != 1:
            raise TypeError(
                "BlobStorage needs exactly one of connection_string=, account_url=, service_client= or "
                f"container_client=; got {', '.join(sources) or 'none'}"
            )
        if container_client is not None:
            if container is not None or client_options:
                raise TypeError("BlobStorage(container_client=...) takes no container name or client options")
            if not isinstance(container_client, ContainerClient):
                raise TypeError(
                    "container_client must be an azure.storage.blob.aio.ContainerClient (the synchronous one "
                    f"cannot be used), got {_type_name(container_client)}"
                )
            self._container = container_client
            self._where = _describe(container_client)
            return
        if not isinstance(container, str) or not container:
            raise TypeError("BlobStorage needs the container name (a non-empty str) as its first argument")
        if (credential is not None or sas_token is not None) and account_url is None:
            raise TypeError("credential= and sas_token= go with account_url=")
        if service_client is not None:
            if client_options:
                raise TypeError("BlobStorage(service_client=...) takes no client options")
            if not isinstance(service_client, BlobServiceClient):
                raise TypeError(
                    "service_client must be an azure.storage.blob.aio.BlobServiceClient (the synchronous one "
                    f"cannot be used), got {_type_name(service_client)}"
                )
            service = service_client
        elif connection_string is not None:
            service = BlobServiceClient.from_connection_string(connection_string, **client_options)
            self._owned.append(service)
        else:
            assert account_url is not None
            if credential is not None and sas_token is not None:
                raise TypeError("give credential= or sas_token=, not both")
            if sas_token is not None:
                credential = AzureSasCredential(sas_token.lstrip("?"))
            elif credential is None and "sig=" not in account_url:
                credential = _default_credential()
                self._owned.append(credential)
            service = BlobServiceClient(account_url, credential=credential, **client_options)
            self._owned.insert(0, service)
        self._container = service.get_container_client(container)
        self._where = _describe(self._container)

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
        except _NATIVE_ERRORS as exc:
            raise self._error("create the container", [], exc) from exc
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
            value, expires_at = self._parse(key, name, blob)
            if _live(expires_at, now):
                found[key] = StoredItem(value, _public_etag(blob.etag, expires_at), expires_at)
        return found

    async def write(self, items: Mapping[str, WriteItem]) -> dict[str, str]:
        if not items:
            return {}
        check_write(items)
        now = self._clock()
        uploads = {key: _upload(key, item, now) for key, item in items.items()}
        await self._open()
        keys = list(items)
        results = await asyncio.gather(
            *(self._write_one(key, items[key].if_match, *uploads[key]) for key in keys),
            return_exceptions=True,
        )
        written: dict[str, str] = {}
        failed: list[str] = []
        problem: BaseException | None = None
        for key, result in zip(keys, results, strict=True):
            if isinstance(result, str):
                written[key] = result
            elif isinstance(result, _Failed):
                failed.append(key)
            elif problem is None:
                problem = result
        if problem is not None:
            raise problem
        if failed:
            raise PreconditionFailedError(failed, written)
        return written

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
                if _live(_expiry(key, properties.metadata or {}, self._where), now):
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
            if metadata.get(LAYOUT_FIELD) != LAYOUT or EXPIRES_FIELD not in metadata:
                continue
            try:
                expires_at = float(metadata[EXPIRES_FIELD])
            except ValueError:
                continue
            if _live(expires_at, now):
                continue
            try:
                await self._container.delete_blob(
                    properties.name, etag=properties.etag, match_condition=MatchConditions.IfNotModified
                )
            except HttpResponseError as exc:
                if exc.status_code in (404, 412):
                    continue  # deleted or rewritten since it was listed
                raise self._error("purge expired blobs", [properties.name], exc) from exc
            except _NATIVE_ERRORS as exc:
                raise self._error("purge expired blobs", [properties.name], exc) from exc
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
            except _NATIVE_ERRORS as exc:
                raise self._error("list keys under", keys, exc) from exc
            yield properties

    async def _key_of_listed(self, properties: BlobProperties) -> str | None:
        """The key a listed blob of ours stores, or None for a blob that is not ours."""
        metadata = properties.metadata or {}
        if metadata.get(LAYOUT_FIELD) != LAYOUT:
            return None
        name = properties.name
        if not is_hashed(name):
            try:
                return key_of(name)
            except ValueError:
                raise CorruptDocumentError(
                    repr(name), "the blob's name is not the escaping of any key", self._where
                ) from None
        length = _key_length(repr(name), metadata, self._where)
        try:
            head = await self._container.download_blob(name, offset=0, length=length)
            raw = await head.readall()
        except HttpResponseError as exc:
            if exc.status_code == 404:
                return None  # deleted since it was listed
            raise self._error("list keys under", [name], exc) from exc
        except _NATIVE_ERRORS as exc:
            raise self._error("list keys under", [name], exc) from exc
        try:
            key = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise CorruptDocumentError(repr(name), "the key it holds is not UTF-8", self._where) from None
        if blob_name(key) != name:
            raise CorruptDocumentError(
                key, f"blob {name!r} holds a key that does not hash to it", self._where
            )
        return key

    async def _download(self, key: str, name: str) -> _Blob | None:
        """The blob under ``name``, or None when there is none."""
        try:
            downloader = await self._container.download_blob(name)
            content = await downloader.readall()
        except HttpResponseError as exc:
            if _blob_missing(exc):
                return None
            raise self._error("read", [key], exc) from exc
        except _NATIVE_ERRORS as exc:
            raise self._error("read", [key], exc) from exc
        properties = downloader.properties
        return _Blob(content, properties.etag, properties.metadata or {})

    async def _write_one(
        self, key: str, if_match: str | None, content: bytes, metadata: dict[str, str]
    ) -> str:
        name = blob_name(key)
        if if_match == ANY_ETAG:
            etag = await self._upload(key, name, content, metadata, overwrite=True)
        elif if_match is None:
            etag = await self._create(key, name, content, metadata)
        else:
            stored_etag, expires_at = _split_etag(if_match)
            if not _live(expires_at, self._clock()):
                raise _Failed(key)
            etag = await self._upload(key, name, content, metadata, etag=stored_etag)
        return _public_etag(etag, _expiry(key, metadata, self._where))

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
            if _refused_precondition(
                exc, create_only=not overwrite and etag is None, if_match=etag is not None
            ):
                raise _Failed(key) from exc
            raise self._error("write", [key], exc) from exc
        except _NATIVE_ERRORS as exc:
            raise self._error("write", [key], exc) from exc
        new_etag = saved.get("etag") if isinstance(saved, dict) else None
        if not isinstance(new_etag, str) or not new_etag:
            raise StorageError(f"Azure Blob Storage ({self._where}) wrote {key!r} but returned no ETag")
        return new_etag

    async def _create(self, key: str, name: str, content: bytes, metadata: dict[str, str]) -> str:
        """Create-only; a blob of ours that has expired but is still stored is replaced on its ETag."""
        for _ in range(_CREATE_ATTEMPTS):
            try:
                return await self._upload(key, name, content, metadata)
            except _Failed:
                pass
            found = await self._download(key, name)
            if found is None:
                continue  # deleted since the create was refused: try again
            _, expires_at = self._parse(key, name, found)
            if _live(expires_at, self._clock()):
                raise _Failed(key)
            return await self._upload(key, name, content, metadata, etag=found.etag)
        raise _Failed(key)

    async def _delete_one(self, key: str, name: str) -> None:
        try:
            await self._container.delete_blob(name)
        except HttpResponseError as exc:
            if not _blob_missing(exc):
                raise self._error("delete", [key], exc) from exc
        except _NATIVE_ERRORS as exc:
            raise self._error("delete", [key], exc) from exc

    def _parse(self, key: str, name: str, blob: _Blob) -> tuple[bytes, float | None]:
        """(value, expires_at) of one of our blobs; CorruptDocumentError for anything else."""
        metadata = blob.metadata
        where = f"{self._where}, blob {name!r}"
        if metadata.get(LAYOUT_FIELD) != LAYOUT:
            raise CorruptDocumentError(
                key,
                f"the blob has no '{LAYOUT_FIELD}={LAYOUT}' metadata, so turnstate did not write it",
                where,
            )
        expires_at = _expiry(key, metadata, where)
        if not is_hashed(name):
            return blob.content, expires_at
        length = _key_length(key, metadata, where)
        stored_key = blob.content[:length]
        if stored_key != key.encode("utf-8"):
            raise CorruptDocumentError(
                key, "the blob under this key's hashed name belongs to another key", where
            )
        return blob.content[length:], expires_at

    def _error(self, action: str, keys: Sequence[str], exc: BaseException) -> StorageError:
        if isinstance(exc, StorageError):
            return exc
        status = getattr(exc, "status_code", None)
        code = _error_code(exc)
        what = f"{action} {_shown(keys)}" if keys else action
        detail = f"{type(exc).__name__}{f' {status}' if status else ''}{f' {code}' if code else ''}"
        if isinstance(
            exc, ServiceRequestError | ServiceResponseError | aiohttp.ClientError | TimeoutError | OSError
        ) or (status in _UNAVAILABLE_STATUS):
            outcome = (
                " Each key was written completely or not at all, but which is unknown: re-read before"
                " writing again."
                if action == "write"
                else ""
            )
            return StorageUnavailableError(
                f"Azure Blob Storage ({self._where}) failed to {what}: {detail}: {_text(exc)}.{outcome}"
            )
        if code == "ContainerNotFound":
            return StorageError(
                f"Azure Blob Storage ({self._where}) could not {what}: the container does not exist. "
                "Create it (BlobStorage(..., create_container=True), or await storage.create_container())"
            )
        if status in (401, 403):
            return StorageError(
                f"Azure Blob Storage ({self._where}) refused to {what}: {detail}. Check the credential "
                "(account key, SAS token and its permissions and expiry, or the identity's role assignment)"
            )
        return StorageError(f"Azure Blob Storage ({self._where}) refused to {what}: {detail}: {_text(exc)}")


def _upload(key: str, item: WriteItem, now: float) -> tuple[bytes, dict[str, str]]:
    """The content and metadata of the blob that stores ``item``."""
    value = item.value
    if not isinstance(value, bytes | bytearray | memoryview):
        raise InvalidItemError(key, f"the value must be bytes, got {type(value).__name__}")
    if item.if_match is not None and not isinstance(item.if_match, str):
        raise InvalidItemError(key, f"if_match must be '*', None or an ETag str, got {item.if_match!r}")
    metadata = {LAYOUT_FIELD: LAYOUT}
    if item.ttl is not None:
        expires_at = float(now + item.ttl)
        if not math.isfinite(expires_at):
            raise InvalidItemError(key, f"ttl {item.ttl!r} is not a finite number; omit it to never expire")
        metadata[EXPIRES_FIELD] = repr(expires_at)
    content = bytes(value)
    if is_hashed(blob_name(key)):
        raw_key = key.encode("utf-8")
        metadata[KEY_BYTES_FIELD] = str(len(raw_key))
        content = raw_key + content
    return content, metadata


def _expiry(key: str, metadata: Mapping[str, str], where: str) -> float | None:
    text = metadata.get(EXPIRES_FIELD)
    if text is None:
        return None
    try:
        expires_at = float(text)
    except ValueError:
        raise CorruptDocumentError(key, f"its '{EXPIRES_FIELD}' metadata is not a number", where) from None
    return expires_at


def _key_length(key: str, metadata: Mapping[str, str], where: str) -> int:
    text = metadata.get(KEY_BYTES_FIELD, "")
    if not text.isdigit() or int(text) == 0:
        raise CorruptDocumentError(
            key, f"the blob has a hashed name but no valid '{KEY_BYTES_FIELD}' metadata", where
        )
    return int(text)


def _error_code(exc: BaseException) -> str | None:
    """Azure's error code (``BlobNotFound``...) as plain text; the SDK gives an enum member or a str."""
    code = getattr(exc, "error_code", None)
    return None if code is None else str(getattr(code, "value", code))


def _refused_precondition(exc: HttpResponseError, *, create_only: bool, if_match: bool) -> bool:
    """Azure refused a conditional Put Blob for its condition (not, say, for a lease on the blob)."""
    code = _error_code(exc)
    failed_condition = exc.status_code == 412 and code in (None, "ConditionNotMet")
    if create_only:
        return failed_condition or (exc.status_code == 409 and code in (None, "BlobAlreadyExists"))
    return if_match and (failed_condition or _blob_missing(exc))


def _blob_missing(exc: HttpResponseError) -> bool:
    """A 404 about the blob itself, not about its container."""
    return exc.status_code == 404 and _error_code(exc) != "ContainerNotFound"


def _live(expires_at: float | None, now: float) -> bool:
    return expires_at is None or expires_at > now


def _public_etag(etag: str, expires_at: float | None) -> str:
    """The ETag turnstate hands out: the blob's, plus its expiry so a stale one is refused locally."""
    return etag if expires_at is None else f"{etag}{_ETAG_EXPIRY}{expires_at!r}"


def _split_etag(public: str) -> tuple[str, float | None]:
    etag, sep, expiry = public.rpartition(_ETAG_EXPIRY)
    if not sep:
        return public, None
    try:
        return etag, float(expiry)
    except ValueError:
        return public, None


def _default_credential() -> Any:
    """azure-identity's DefaultAzureCredential (async), imported only when it is needed."""
    try:
        identity = importlib.import_module("azure.identity.aio")
    except ImportError as exc:
        raise TypeError(
            "BlobStorage(account_url=...) without credential= or sas_token= signs in with azure-identity's "
            "DefaultAzureCredential, which is not installed: pip install 'turnstate-blob[identity]', or pass "
            "credential= (the account key or a token credential) or sas_token="
        ) from exc
    return identity.DefaultAzureCredential()


def _describe(container: ContainerClient) -> str:
    """Container, account and host, never the URL's query (a SAS token would be in it)."""
    return (
        f"container {container.container_name!r} of account {container.account_name!r} at "
        f"{container.scheme}://{container.primary_hostname}"
    )


def _type_name(value: object) -> str:
    return f"{type(value).__module__}.{type(value).__name__}"


def _shown(keys: Sequence[str]) -> str:
    return ", ".join(repr(k) for k in keys[:3]) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")


def _text(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else "(no message)").rstrip(".")[:300]
