"""CosmosStorage: turnstate items as Azure Cosmos DB items in a container partitioned by /id."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping, Sequence
from typing import Any, ClassVar, TypeVar

from azure.core import MatchConditions
from azure.cosmos.aio import ContainerProxy, CosmosClient
from azure.cosmos.exceptions import CosmosHttpResponseError

from turnstate.errors import InvalidKeyError, StorageError
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
from turnstate_cosmos._container import open_container, target
from turnstate_cosmos._errors import NATIVE_ERRORS, CosmosErrors, container_gone, item_missing
from turnstate_cosmos._items import (
    item_body,
    listed_key,
    live,
    parse_item,
    public_etag,
    saved_etag,
    split_etag,
)
from turnstate_cosmos._keys import item_id
from turnstate_cosmos.charges import Meter, RequestCharges
from turnstate_cosmos.settings import ContainerSettings

_LIST_QUERY = "SELECT c.id, c.key, c.expires_at FROM c WHERE STARTSWITH(c.key, @prefix)"
_CREATE_ATTEMPTS = 3
_READS, _WRITES, _QUERIES = "point_reads", "writes", "queries"

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
        self._closed = False
        self._ready: ContainerProxy | None = None
        self._charges = RequestCharges()
        self._last_call = RequestCharges()
        self._setup_lock = asyncio.Lock()
        self._create_if_missing = create_if_missing
        self._target = target(
            endpoint,
            credential,
            database,
            container,
            client=client,
            container_client=container_client,
            options=client_options,
        )
        self._where = self._target.where
        self._errors = CosmosErrors(self._where, recreates=create_if_missing)

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
        return ContainerSettings.from_properties(self._target.database, properties)

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
            value, expires_at, etag = parse_item(key, row, self._where)
            if live(expires_at, now):
                found[key] = StoredItem(value, public_etag(etag, expires_at), expires_at)
        return found

    async def write(self, items: Mapping[str, WriteItem]) -> dict[str, str]:
        if not items:
            return {}
        check_write(items)
        now = self._clock()
        bodies = {key: item_body(key, item, now) for key, item in items.items()}
        container = await self._open("write", list(items))
        keys = list(items)
        results = await self._each(
            lambda meter: [
                self._write_one(container, key, items[key].if_match, bodies[key], meter) for key in keys
            ]
        )
        return settle_writes(
            (key, None if isinstance(result, _Failed) else result)
            for key, result in zip(keys, results, strict=True)
        )

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
        if self._target.owned and self._target.client is not None:
            await self._target.client.close()

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
            except NATIVE_ERRORS as exc:
                raise self._error("list keys under", [prefix], exc) from exc
            key, expires_at = listed_key(row, self._where)
            if live(expires_at, now):
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
                setup = open_container(
                    self._target, create_if_missing=self._create_if_missing, storage=repr(self)
                )
                self._ready = await self._call(action, keys, setup)
        return self._ready

    async def _call(self, action: str, keys: Sequence[str], work: Awaitable[_T]) -> _T:
        try:
            return await work
        except NATIVE_ERRORS as exc:
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
            if item_missing(exc):
                return None
            raise self._error("read", [key], exc) from exc
        except NATIVE_ERRORS as exc:
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
            etag, expires_at = split_etag(if_match)
            if not live(expires_at, self._clock()):
                raise _Failed(key)
            saved = await self._replace(container, key, body, etag, meter)
        return public_etag(saved_etag(key, saved, self._where), body["expires_at"])

    async def _send(self, key: str, meter: Meter, work: Awaitable[_T]) -> _T:
        """One write request; a refusal is counted and raised as a StorageError."""
        try:
            return await work
        except CosmosHttpResponseError as exc:
            meter.count(_WRITES, exc.headers)
            raise self._error("write", [key], exc) from exc
        except NATIVE_ERRORS as exc:
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
            except NATIVE_ERRORS as exc:
                raise self._error("write", [key], exc) from exc
            else:
                return created
            row = await self._read_one(container, key, body["id"], meter)
            if row is None:
                continue  # deleted (or expired by Cosmos DB) since the create was refused: try again
            _, expires_at, etag = parse_item(key, row, self._where)
            if live(expires_at, self._clock()):
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
            if exc.status_code == 412 or item_missing(exc):
                raise _Failed(key) from exc
            raise self._error("write", [key], exc) from exc
        except NATIVE_ERRORS as exc:
            raise self._error("write", [key], exc) from exc
        return saved

    async def _delete_one(self, container: ContainerProxy, key: str, name: str, meter: Meter) -> None:
        try:
            await container.delete_item(name, partition_key=name, response_hook=meter.hook(_WRITES))
        except CosmosHttpResponseError as exc:
            meter.count(_WRITES, exc.headers)
            if not item_missing(exc):
                raise self._error("delete", [key], exc) from exc
        except NATIVE_ERRORS as exc:
            raise self._error("delete", [key], exc) from exc

    def _error(self, action: str, keys: Sequence[str], exc: BaseException) -> StorageError:
        if container_gone(exc):
            # a 404 that is not a missing item is a missing database or container: set it up again
            # (creating it, if allowed) on the next call instead of failing forever
            self._ready = None
        return self._errors.for_call(action, keys, exc)
