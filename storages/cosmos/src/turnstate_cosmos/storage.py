"""CosmosStorage: turnstate items as Azure Cosmos DB items in a container partitioned by /id."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping, Sequence
from typing import Any, ClassVar, TypeVar

import aiohttp
from azure.core import MatchConditions
from azure.core.exceptions import AzureError, ServiceRequestError, ServiceResponseError
from azure.cosmos import PartitionKey
from azure.cosmos.aio import ContainerProxy, CosmosClient
from azure.cosmos.exceptions import CosmosHttpResponseError, CosmosResourceExistsError

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
from turnstate_cosmos._keys import is_hashed, item_id
from turnstate_cosmos.charges import Meter, RequestCharges
from turnstate_cosmos.settings import PARTITION_KEY_PATH, ContainerSettings, indexing_policy

_LIST_QUERY = "SELECT c.id, c.key, c.expires_at FROM c WHERE STARTSWITH(c.key, @prefix)"
_ETAG_EXPIRY = "~exp:"
_MAX_TTL_SECONDS = 2**31 - 1
_CREATE_ATTEMPTS = 3
_UNAVAILABLE_STATUS = frozenset({408, 429, 449, 503})
_NATIVE_ERRORS = (AzureError, aiohttp.ClientError, TimeoutError, OSError)
_READS, _WRITES, _QUERIES = "point_reads", "writes", "queries"
_OWNER_RESOURCE_NOT_FOUND = 1003  # the sub-status of a 404 whose database or container is missing

_T = TypeVar("_T")


class _Failed(Exception):
    """A write's precondition failed for one key (internal; becomes PreconditionFailedError)."""


class CosmosStorage(Storage):
    """Items in one Cosmos DB container (partition key ``/id``), one item per key.

    Build it from ``endpoint`` and ``credential`` (an account key or an ``azure.identity`` async
    credential) and it owns the client and closes it in :meth:`aclose`; other keyword arguments go to
    ``azure.cosmos.aio.CosmosClient``. Or pass ``client=`` (a ``CosmosClient``, with ``database`` and
    ``container`` names) or ``container_client=`` (a ``ContainerProxy``): used as is, never closed.

    With ``create_if_missing`` (the default) the database and container are created on first use, with
    partition key ``/id``, per-item TTL enabled and only ``/key/?`` indexed. An existing container must be
    partitioned by ``/id``; its other settings are used as they are (see :meth:`describe`).

    Every ``read`` is one point read per key and every ``write`` one request per key, all concurrent.
    :attr:`charges` and :attr:`last_call` report the requests made and the request units they cost.

    Differences from the base contract: a multi-key write is not atomic (each key is written on its
    own, concurrently; see ``PreconditionFailedError.written``). An unconditional (``"*"``) write
    replaces whatever item has the id, even one turnstate did not write. Expired items read as absent
    by the ``expires_at`` they carry (``clock`` gives the current epoch time); Cosmos DB itself deletes
    them only where the container has TTL enabled.
    """

    capabilities: ClassVar[Capabilities] = Capabilities(
        atomic_batch=False, native_ttl=False, list_keys=True, shared=True
    )

    def __init__(
        self,
        endpoint: str | None = None,
        credential: Any = None,
        database: str | None = None,
        container: str | None = None,
        *,
        client: CosmosClient | None = None,
        container_client: ContainerProxy | None = None,
        create_if_missing: bool = True,
        clock: Callable[[], float] = time.time,
        **client_options: Any,
    ) -> None:
        self._clock = clock
        self._create_if_missing = create_if_missing
        self._closed = False
        self._ready: ContainerProxy | None = None
        self._charges = RequestCharges()
        self._last_call = RequestCharges()
        self._setup_lock = asyncio.Lock()
        self._owned_client: CosmosClient | None = None
        self._client: CosmosClient | None = None
        self._container: ContainerProxy | None = None
        if container_client is not None:
            given = [
                name
                for name, value in (
                    ("endpoint", endpoint is not None),
                    ("credential", credential is not None),
                    ("database", database is not None),
                    ("container", container is not None),
                    ("client", client is not None),
                    *((option, True) for option in client_options),
                )
                if value
            ]
            if given:
                raise TypeError(f"CosmosStorage(container_client=...) takes no {', '.join(given)}")
            if not isinstance(container_client, ContainerProxy):
                raise TypeError(
                    "container_client must be an azure.cosmos.aio.ContainerProxy, got "
                    f"{type(container_client).__module__}.{type(container_client).__name__}"
                )
            self._container = container_client
            self._database_name = _database_of(container_client)
            self._container_name = container_client.id
            self._where = f"container {self._container_name!r}"
            return
        if not isinstance(database, str) or not database or not isinstance(container, str) or not container:
            raise TypeError("CosmosStorage needs database and container names (non-empty str)")
        self._database_name, self._container_name = database, container
        if client is not None:
            if endpoint is not None or credential is not None or client_options:
                raise TypeError("CosmosStorage(client=...) takes no endpoint, credential or client options")
            if not isinstance(client, CosmosClient):
                raise TypeError(
                    "client must be an azure.cosmos.aio.CosmosClient (the synchronous one cannot be used), "
                    f"got {type(client).__module__}.{type(client).__name__}"
                )
            self._client = client
            self._where = f"database {database!r} container {container!r}"
            return
        if not isinstance(endpoint, str) or not endpoint:
            raise TypeError(
                "CosmosStorage needs an endpoint such as 'https://myaccount.documents.azure.com:443/' "
                "and a credential, or client=... / container_client=..."
            )
        if credential is None:
            raise TypeError("CosmosStorage needs a credential: the account key or an async token credential")
        self._owned_client = self._client = CosmosClient(endpoint, credential, **client_options)
        self._where = f"{endpoint} database {database!r} container {container!r}"

    def __repr__(self) -> str:
        return f"CosmosStorage({self._where})"

    @property
    def charges(self) -> RequestCharges:
        """Running total of the requests ``read``, ``write``, ``delete`` and ``list_keys`` made.

        Setting the container up on first use and :meth:`describe` are not counted.
        """
        return self._charges

    @property
    def last_call(self) -> RequestCharges:
        """The requests of the call that finished last (with concurrent calls: whichever ended last)."""
        return self._last_call

    async def describe(self) -> ContainerSettings:
        """Read the container's settings from Cosmos DB (one request; sets the container up if needed)."""
        container = await self._open("describe the container", [])
        properties = await self._call("describe the container", [], container.read())
        return ContainerSettings.from_properties(self._database_name, properties)

    # -- the protocol ----------------------------------------------------------------------------------

    async def read(self, keys: Collection[str]) -> dict[str, StoredItem]:
        check_keys(keys)
        if not keys:
            return {}
        unique = list(dict.fromkeys(keys))
        names = {key: item_id(key) for key in unique}
        container = await self._open("read", unique)
        rows = await self._each(
            lambda meter: [self._read_one(container, key, name, meter) for key, name in names.items()]
        )
        now = self._clock()
        found: dict[str, StoredItem] = {}
        for key, row in zip(unique, rows, strict=True):
            if isinstance(row, BaseException):
                raise row
            if row is None:
                continue
            value, expires_at, etag = self._parse(key, row)
            if _live(expires_at, now):
                found[key] = StoredItem(value, _public_etag(etag, expires_at), expires_at)
        return found

    async def write(self, items: Mapping[str, WriteItem]) -> dict[str, str]:
        if not items:
            return {}
        check_write(items)
        now = self._clock()
        bodies = {key: _body(key, item, now) for key, item in items.items()}
        container = await self._open("write", list(items))
        keys = list(items)
        results = await self._each(
            lambda meter: [
                self._write_one(container, key, items[key].if_match, bodies[key], meter) for key in keys
            ]
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
        names = {key: item_id(key) for key in unique}
        container = await self._open("delete", unique)
        results = await self._each(
            lambda meter: [self._delete_one(container, key, name, meter) for key, name in names.items()]
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def list_keys(self, prefix: str = "") -> AsyncIterator[str]:
        """Yield live keys starting with ``prefix`` (one query on the stored real key)."""
        if not isinstance(prefix, str):
            raise InvalidKeyError(repr(prefix), f"a key prefix is a str, got {type(prefix).__name__}")
        container = await self._open("list keys under", [prefix])
        meter = Meter()
        try:
            async for key in self._list(container, prefix, meter):
                yield key
        finally:
            self._record(meter)

    async def aclose(self) -> None:
        """Close the client if this storage built it; a client passed in is left open. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._owned_client is not None:
            await self._owned_client.close()

    # -- internals -------------------------------------------------------------------------------------

    async def _list(self, container: ContainerProxy, prefix: str, meter: Meter) -> AsyncIterator[str]:
        pages = container.query_items(
            _LIST_QUERY, parameters=[{"name": "@prefix", "value": prefix}], response_hook=meter.hook(_QUERIES)
        )
        now = self._clock()
        while True:
            try:
                row = await anext(pages)
            except StopAsyncIteration:
                return
            except CosmosHttpResponseError as exc:
                meter.count(_QUERIES, exc.headers)
                raise self._error("list keys under", [prefix], exc) from exc
            except _NATIVE_ERRORS as exc:
                raise self._error("list keys under", [prefix], exc) from exc
            key = row.get("key") if isinstance(row, dict) else None
            if not isinstance(key, str) or not key or item_id(key) != row.get("id"):
                raise CorruptDocumentError(
                    repr(key),
                    f"item {row.get('id')!r} holds a key that does not encode to its id",
                    self._where,
                )
            expires_at = row.get("expires_at")
            if expires_at is not None and not _is_number(expires_at):
                raise CorruptDocumentError(key, "expires_at is not a number or null", self._where)
            if _live(expires_at, now):
                yield key

    async def _each(self, requests: Callable[[Meter], list[Awaitable[_T]]]) -> list[_T | BaseException]:
        """One request per key, all at once, their charges recorded as one call; errors are returned."""
        meter = Meter()
        try:
            return await asyncio.gather(*requests(meter), return_exceptions=True)
        finally:
            self._record(meter)

    def _record(self, meter: Meter) -> None:
        self._last_call = meter.charges()
        self._charges = self._charges + self._last_call

    async def _open(self, action: str, keys: Sequence[str]) -> ContainerProxy:
        """The container, created (if asked) and checked on first use."""
        if self._closed:
            raise StorageError(f"{self!r} was closed with aclose(); create a new storage to use it again")
        if self._ready is not None:
            return self._ready
        async with self._setup_lock:
            if self._ready is None:
                self._ready = await self._call(action, keys, self._setup())
        return self._ready

    async def _setup(self) -> ContainerProxy:
        container = self._container
        if container is None and self._client is not None:
            if self._create_if_missing:
                # several instances starting at once race to create: one wins, the others see 409
                for attempt in range(3):
                    try:
                        database = await self._client.create_database_if_not_exists(self._database_name)
                        container = await database.create_container_if_not_exists(
                            self._container_name,
                            partition_key=PartitionKey(PARTITION_KEY_PATH),
                            default_ttl=-1,
                            indexing_policy=indexing_policy(),
                        )
                        break
                    except CosmosResourceExistsError:
                        if attempt == 2:
                            raise
            else:
                container = self._client.get_database_client(self._database_name).get_container_client(
                    self._container_name
                )
        if container is None:
            raise StorageError(f"{self!r} has neither a client nor a container")
        try:
            properties = await container.read()
        except CosmosHttpResponseError as exc:
            if exc.status_code == 404:
                raise StorageError(
                    f"{self!r} does not exist: create it with partition key {PARTITION_KEY_PATH!r}, "
                    "or pass create_if_missing=True"
                ) from exc
            raise
        paths = (properties.get("partitionKey") or {}).get("paths")
        if paths != [PARTITION_KEY_PATH]:
            raise StorageError(
                f"{self!r} is partitioned by {paths!r}; turnstate needs a container partitioned by "
                f"{PARTITION_KEY_PATH!r} (one item per key, so every point operation is single-partition)"
            )
        return container

    async def _call(self, action: str, keys: Sequence[str], work: Awaitable[_T]) -> _T:
        try:
            return await work
        except _NATIVE_ERRORS as exc:
            raise self._error(action, keys, exc) from exc

    async def _read_one(
        self, container: ContainerProxy, key: str, name: str, meter: Meter
    ) -> dict[str, Any] | None:
        """The item under ``name``, or None when there is none."""
        try:
            row: dict[str, Any] = await container.read_item(
                name, partition_key=name, response_hook=meter.hook(_READS)
            )
        except CosmosHttpResponseError as exc:
            meter.count(_READS, exc.headers)
            if _item_missing(exc):
                return None
            raise self._error("read", [key], exc) from exc
        except _NATIVE_ERRORS as exc:
            raise self._error("read", [key], exc) from exc
        return row

    async def _write_one(
        self, container: ContainerProxy, key: str, if_match: str | None, body: dict[str, Any], meter: Meter
    ) -> str:
        saved: Mapping[str, Any]
        if if_match == ANY_ETAG:
            upsert = container.upsert_item(body, response_hook=meter.hook(_WRITES))
            saved = await self._send(key, meter, upsert)
        elif if_match is None:
            saved = await self._create(container, key, body, meter)
        else:
            etag, expires_at = _split_etag(if_match)
            if not _live(expires_at, self._clock()):
                raise _Failed(key)
            saved = await self._replace(container, key, body, etag, meter)
        return _public_etag(self._etag_of(key, saved), body["expires_at"])

    async def _send(self, key: str, meter: Meter, work: Awaitable[_T]) -> _T:
        """One write request; a refusal is counted and raised as a StorageError."""
        try:
            return await work
        except CosmosHttpResponseError as exc:
            meter.count(_WRITES, exc.headers)
            raise self._error("write", [key], exc) from exc
        except _NATIVE_ERRORS as exc:
            raise self._error("write", [key], exc) from exc

    async def _create(
        self, container: ContainerProxy, key: str, body: dict[str, Any], meter: Meter
    ) -> dict[str, Any]:
        """Create-only; an expired item still stored is replaced, conditionally on its ETag."""
        for _ in range(_CREATE_ATTEMPTS):
            try:
                created: dict[str, Any] = await container.create_item(body, response_hook=meter.hook(_WRITES))
            except CosmosHttpResponseError as exc:
                meter.count(_WRITES, exc.headers)
                if exc.status_code != 409:
                    raise self._error("write", [key], exc) from exc
            except _NATIVE_ERRORS as exc:
                raise self._error("write", [key], exc) from exc
            else:
                return created
            row = await self._read_one(container, key, body["id"], meter)
            if row is None:
                continue  # deleted (or expired by Cosmos DB) since the create was refused: try again
            _, expires_at, etag = self._parse(key, row)
            if _live(expires_at, self._clock()):
                raise _Failed(key)
            return await self._replace(container, key, body, etag, meter)
        raise _Failed(key)

    async def _replace(
        self, container: ContainerProxy, key: str, body: dict[str, Any], etag: str, meter: Meter
    ) -> dict[str, Any]:
        try:
            saved: dict[str, Any] = await container.replace_item(
                body["id"],
                body,
                etag=etag,
                match_condition=MatchConditions.IfNotModified,
                response_hook=meter.hook(_WRITES),
            )
        except CosmosHttpResponseError as exc:
            meter.count(_WRITES, exc.headers)
            if exc.status_code == 412 or _item_missing(exc):
                raise _Failed(key) from exc
            raise self._error("write", [key], exc) from exc
        except _NATIVE_ERRORS as exc:
            raise self._error("write", [key], exc) from exc
        return saved

    async def _delete_one(self, container: ContainerProxy, key: str, name: str, meter: Meter) -> None:
        try:
            await container.delete_item(name, partition_key=name, response_hook=meter.hook(_WRITES))
        except CosmosHttpResponseError as exc:
            meter.count(_WRITES, exc.headers)
            if not _item_missing(exc):
                raise self._error("delete", [key], exc) from exc
        except _NATIVE_ERRORS as exc:
            raise self._error("delete", [key], exc) from exc

    def _parse(self, key: str, row: dict[str, Any]) -> tuple[bytes, float | None, str]:
        """(value, expires_at, Cosmos ETag) of one of our items; CorruptDocumentError otherwise."""
        stored_key = row.get("key")
        if stored_key != key:
            reason = (
                "the item under this key's hashed id belongs to another key"
                if is_hashed(row.get("id", "")) and isinstance(stored_key, str)
                else "the item has no matching 'key' field, so turnstate did not write it"
            )
            raise CorruptDocumentError(key, reason, self._where)
        value, expires_at, etag = row.get("value"), row.get("expires_at"), row.get("_etag")
        if not isinstance(value, str):
            raise CorruptDocumentError(key, "the item's 'value' is not a string", self._where)
        if expires_at is not None and not _is_number(expires_at):
            raise CorruptDocumentError(key, "the item's 'expires_at' is not a number or null", self._where)
        if not isinstance(etag, str) or not etag:
            raise CorruptDocumentError(key, "the item has no '_etag'", self._where)
        try:
            raw = value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise CorruptDocumentError(key, "the item's 'value' is not valid Unicode", self._where) from exc
        return raw, None if expires_at is None else float(expires_at), etag

    def _etag_of(self, key: str, saved: object) -> str:
        etag = saved.get("_etag") if isinstance(saved, dict) else None
        if not isinstance(etag, str) or not etag:
            raise StorageError(f"Cosmos DB ({self._where}) wrote {key!r} but returned no ETag")
        return etag

    def _error(self, action: str, keys: Sequence[str], exc: BaseException) -> StorageError:
        if isinstance(exc, StorageError):
            return exc
        status = getattr(exc, "status_code", None)
        what = f"{action} {_shown(keys)}" if keys else action
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
                f"Cosmos DB ({self._where}) failed to {what}: {type(exc).__name__}"
                f"{f' {status}' if status else ''}: {_text(exc)}.{outcome}"
            )
        if status == 404:
            # a 404 that is not a missing item is a missing database or container: set it up again
            # (creating it, if allowed) on the next call instead of failing forever
            self._ready = None
            return StorageError(
                f"Cosmos DB ({self._where}) could not {what}: the database or container is "
                f"gone ({type(exc).__name__} 404). The next call sets it up again"
                f"{' (creating it)' if self._create_if_missing else ''}."
            )
        return StorageError(
            f"Cosmos DB ({self._where}) refused to {what}: {type(exc).__name__}"
            f"{f' {status}' if status else ''}: {_text(exc)}"
        )


def _body(key: str, item: WriteItem, now: float) -> dict[str, Any]:
    value = item.value
    if not isinstance(value, bytes | bytearray | memoryview):
        raise InvalidItemError(key, f"the value must be bytes, got {type(value).__name__}")
    try:
        text = bytes(value).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidItemError(
            key, f"Cosmos DB stores values as UTF-8 text and this one is not ({exc})"
        ) from exc
    if item.if_match is not None and not isinstance(item.if_match, str):
        raise InvalidItemError(key, f"if_match must be '*', None or an ETag str, got {item.if_match!r}")
    expires_at: float | None = None
    ttl = -1
    if item.ttl is not None:
        if not math.isfinite(item.ttl) or math.ceil(item.ttl) + 1 > _MAX_TTL_SECONDS:
            raise InvalidItemError(
                key, f"ttl {item.ttl!r} is too large for Cosmos DB; omit it to never expire"
            )
        expires_at = float(now + item.ttl)
        # Cosmos DB counts ttl from the item's _ts, the write time rounded down to the second: one second
        # more keeps it from deleting the item before expires_at.
        ttl = math.ceil(item.ttl) + 1
    return {"id": item_id(key), "key": key, "value": text, "expires_at": expires_at, "ttl": ttl}


def _item_missing(exc: CosmosHttpResponseError) -> bool:
    """A 404 about the item itself, not about its database or container (sub-status 1003)."""
    if exc.status_code != 404 or exc.sub_status == _OWNER_RESOURCE_NOT_FOUND:
        return False
    request = getattr(exc.response, "request", None)
    return "/docs/" in str(getattr(request, "url", "/docs/"))


def _live(expires_at: float | None, now: float) -> bool:
    return expires_at is None or expires_at > now


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _public_etag(etag: str, expires_at: float | None) -> str:
    """The ETag turnstate hands out: Cosmos's, plus the item's expiry so a stale one is refused locally."""
    return etag if expires_at is None else f"{etag}{_ETAG_EXPIRY}{expires_at!r}"


def _split_etag(public: str) -> tuple[str, float | None]:
    etag, sep, expiry = public.rpartition(_ETAG_EXPIRY)
    if not sep:
        return public, None
    try:
        return etag, float(expiry)
    except ValueError:
        return public, None


def _database_of(container: ContainerProxy) -> str:
    link: str = container.database_link
    return link.rsplit("/", 1)[-1]


def _shown(keys: Sequence[str]) -> str:
    return ", ".join(repr(k) for k in keys[:3]) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")


def _text(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else "(no message)").rstrip(".")[:300]
