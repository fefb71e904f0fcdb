"""RedisStorage: turnstate's shared storage on Redis or Redis Cluster."""

from __future__ import annotations

import enum
import math
import time
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from typing import Any, ClassVar, Literal

from redis.asyncio import Redis, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import (
    ClusterDownError,
    MovedError,
    NoScriptError,
    ReadOnlyError,
    RedisClusterException,
    RedisError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

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
from turnstate_redis._layout import (
    CAS_SCRIPT,
    CAS_SHA,
    FOREIGN_TYPE,
    FOREIGN_TYPE_REASON,
    NOT_OUR_LAYOUT,
    NOT_OUR_LAYOUT_REASON,
    PRECONDITION_FAILED,
    WRITTEN,
    new_etag,
    pack,
    unpack,
    where,
)
from turnstate_redis._transport import (
    ClusterTransport,
    Command,
    StandaloneTransport,
    Transport,
    TransportError,
)

DEFAULT_KEY_PREFIX = "turnstate:"
DEFAULT_TIMEOUT = 5.0

_MAX_TTL_MS = 2**62
_SCRIPT_LOAD_ATTEMPTS = 2
_GLOB_SPECIAL = frozenset(b"*?[]\\")
_UNAVAILABLE = (
    RedisConnectionError,
    RedisTimeoutError,
    ClusterDownError,
    TryAgainError,
    ReadOnlyError,
    RedisClusterException,
    TransportError,
)


class _Unset(enum.Enum):
    UNSET = enum.auto()


_UNSET: Literal[_Unset.UNSET] = _Unset.UNSET


class RedisStorage(Storage):
    """Items as Redis strings under ``key_prefix``; reads and writes cost one round trip each.

    Build it from a URL (``redis://``, ``rediss://`` for TLS, ``unix://``; ``cluster=True`` for a Redis
    Cluster), and it owns the client and closes it in :meth:`aclose`. Or pass ``client=`` (a
    ``redis.asyncio.Redis`` or ``RedisCluster``): it is used as is and never closed.

    ``socket_timeout`` and ``socket_connect_timeout`` (seconds, default 5, ``None`` waits forever) apply
    to a client built from a URL; other keyword arguments go to redis-py's ``from_url``.

    ``StoredItem.expires_at`` is this host's clock plus the ``PTTL`` the server reported, read in the same
    round trip right after the value (a write landing between the two can only make it the expiry of a
    newer version, whose ETag differs).

    Differences from the base contract: a multi-key write is not atomic (each key is compare-and-set on
    its own; see ``PreconditionFailedError.written``). A connection failure or timeout raises
    StorageUnavailableError without any retry: in a write, each key was written completely or not at
    all, but which is unknown, so re-read before writing again. The next call reconnects by itself.
    """

    capabilities: ClassVar[Capabilities] = Capabilities(
        atomic_batch=False, native_ttl=True, list_keys=True, shared=True
    )

    def __init__(
        self,
        url: str | None = None,
        *,
        client: Redis | RedisCluster | None = None,
        key_prefix: str = DEFAULT_KEY_PREFIX,
        cluster: bool = False,
        socket_timeout: float | Literal[_Unset.UNSET] | None = _UNSET,
        socket_connect_timeout: float | Literal[_Unset.UNSET] | None = _UNSET,
        **client_options: Any,
    ) -> None:
        if not isinstance(key_prefix, str):
            raise TypeError(f"key_prefix must be a str, got {type(key_prefix).__name__}")
        try:
            self._prefix = key_prefix.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError(f"key_prefix {key_prefix!r} cannot be encoded as UTF-8") from exc
        self._key_prefix = key_prefix
        self._closed = False
        if client is not None:
            given = [
                name
                for name, value in (
                    ("url", url is not None),
                    ("cluster", cluster),
                    ("socket_timeout", socket_timeout is not _UNSET),
                    ("socket_connect_timeout", socket_connect_timeout is not _UNSET),
                    *((option, True) for option in client_options),
                )
                if value
            ]
            if given:
                raise TypeError(
                    f"RedisStorage(client=...) takes no {', '.join(given)}: configure the client you pass"
                )
            self._owns_client = False
            self._transport = _transport_for(client)
            self._where = _describe(client)
            return
        if not isinstance(url, str) or not url:
            raise TypeError("RedisStorage needs a URL such as 'redis://localhost:6379' or client=...")
        options: dict[str, Any] = {
            "socket_timeout": DEFAULT_TIMEOUT if socket_timeout is _UNSET else socket_timeout,
            "socket_connect_timeout": (
                DEFAULT_TIMEOUT if socket_connect_timeout is _UNSET else socket_connect_timeout
            ),
            # The storage never replays a command; a failed connect fails the call at once.
            "retry": Retry(NoBackoff(), 0),
            **client_options,
        }
        built = RedisCluster.from_url(url, **options) if cluster else Redis.from_url(url, **options)
        self._owns_client = True
        self._transport = _transport_for(built)
        self._where = _describe(built)

    @property
    def key_prefix(self) -> str:
        """The prefix in front of every key this storage stores."""
        return self._key_prefix

    def __repr__(self) -> str:
        return f"RedisStorage({self._where}, key_prefix={self._key_prefix!r})"

    # -- the protocol ----------------------------------------------------------------------------------

    async def read(self, keys: Collection[str]) -> dict[str, StoredItem]:
        check_keys(keys)
        if not keys:
            return {}
        unique = list(dict.fromkeys(keys))
        names = [self._name(key) for key in unique]
        # GET and PTTL of each key, pipelined: still one round trip (per master) for the whole batch.
        commands: list[Command] = []
        for name in names:
            commands += (("GET", name), ("PTTL", name))
        replies = await self._execute("read", unique, [n for name in names for n in (name, name)], commands)
        now = time.time()
        found: dict[str, StoredItem] = {}
        for index, (key, name) in enumerate(zip(unique, names, strict=True)):
            reply, ttl_ms = replies[2 * index], replies[2 * index + 1]
            if reply is None:
                continue
            if not isinstance(reply, bytes):
                raise self._reply_error("read", key, name, reply)
            if not isinstance(ttl_ms, int) or ttl_ms == -2:
                if isinstance(ttl_ms, int):
                    continue  # expired or deleted right after the GET: absent now
                raise self._reply_error("read", key, name, ttl_ms)
            found[key] = unpack(key, name, reply, None if ttl_ms < 0 else now + ttl_ms / 1000)
        return found

    async def write(self, items: Mapping[str, WriteItem]) -> dict[str, str]:
        if not items:
            return {}
        check_write(items)
        keys = list(items)
        names: list[bytes] = []
        etags: list[str] = []
        commands: list[Command] = []
        for key in keys:
            name, etag = self._name(key), new_etag()
            names.append(name)
            etags.append(etag)
            commands.append(("EVALSHA", CAS_SHA, 1, name, *_script_args(key, items[key], etag)))
        replies = await self._run_script(keys, names, commands)
        written: dict[str, str] = {}
        failed: list[str] = []
        problem: StorageError | None = None
        for key, name, etag, reply in zip(keys, names, etags, replies, strict=True):
            if reply == WRITTEN:
                written[key] = etag
            elif reply == PRECONDITION_FAILED:
                failed.append(key)
            elif problem is None:
                problem = self._reply_error("write", key, name, reply)
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
        names = [self._name(key) for key in unique]
        replies = await self._execute("delete", unique, names, [("DEL", name) for name in names])
        for key, name, reply in zip(unique, names, replies, strict=True):
            if isinstance(reply, Exception):
                raise self._reply_error("delete", key, name, reply)

    async def list_keys(self, prefix: str = "") -> AsyncIterator[str]:
        """Yield live keys starting with ``prefix`` (SCAN over every primary; each key once)."""
        if not isinstance(prefix, str):
            raise InvalidKeyError(repr(prefix), f"a key prefix is a str, got {type(prefix).__name__}")
        self._check_open()
        match = _glob_escape(self._name(prefix, allow_empty=True)) + b"*"
        seen: set[bytes] = set()
        try:
            async for name in self._transport.scan(match):
                if name in seen:
                    continue
                seen.add(name)
                yield self._key_of(name)
        except (RedisError, RedisClusterException, TransportError) as exc:
            raise self._call_error("list keys under", [prefix], exc) from exc

    async def aclose(self) -> None:
        """Close the client if this storage built it; a client passed in is left open. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._owns_client:
            await self._transport.aclose()

    # -- internals -------------------------------------------------------------------------------------

    def _name(self, key: str, *, allow_empty: bool = False) -> bytes:
        try:
            return self._prefix + key.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidKeyError(
                key, f"Redis keys here are UTF-8 and this one cannot be encoded ({exc})"
            ) from exc

    def _key_of(self, name: bytes) -> str:
        try:
            return name[len(self._prefix) :].decode("utf-8")
        except UnicodeDecodeError as exc:
            shown = name.decode("utf-8", "backslashreplace")
            raise CorruptDocumentError(
                shown, "the Redis key is not UTF-8, so turnstate did not write it"
            ) from exc

    def _check_open(self) -> None:
        if self._closed:
            raise StorageError(f"{self!r} was closed with aclose(); create a new storage to use it again")

    async def _execute(
        self,
        action: str,
        keys: Sequence[str],
        names: Sequence[bytes],
        commands: Sequence[Command],
        prelude: Sequence[Command] = (),
    ) -> list[object]:
        self._check_open()
        try:
            return await self._transport.execute(names, commands, prelude)
        except (RedisError, RedisClusterException, TransportError) as exc:
            raise self._call_error(action, keys, exc) from exc

    async def _run_script(self, keys: list[str], names: list[bytes], commands: list[Command]) -> list[object]:
        """Run EVALSHA commands; where the server lost the script, load it and re-send just those.

        NOSCRIPT means that command did not run, so re-sending it cannot apply a write twice.
        """
        replies = await self._execute("write", keys, names, commands)
        for _ in range(_SCRIPT_LOAD_ATTEMPTS):
            missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
            if not missing:
                return replies
            again = await self._execute(
                "write",
                [keys[i] for i in missing],
                [names[i] for i in missing],
                [commands[i] for i in missing],
                prelude=[("SCRIPT", "LOAD", CAS_SCRIPT)],
            )
            for index, reply in zip(missing, again, strict=True):
                replies[index] = reply
        return replies

    def _call_error(self, action: str, keys: Sequence[str], exc: BaseException) -> StorageError:
        shown = ", ".join(repr(k) for k in keys[:3]) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")
        if isinstance(exc, _UNAVAILABLE):
            outcome = (
                " Each key was written completely or not at all, but which is unknown: re-read before"
                " writing again."
                if action == "write"
                else ""
            )
            return StorageUnavailableError(
                f"Redis at {self._where} failed to {action} {shown}: {type(exc).__name__}: {_text(exc)}. "
                f"Nothing was retried.{outcome} The next call reconnects by itself."
            )
        if isinstance(exc, MovedError) and isinstance(self._transport, StandaloneTransport):
            outcome = (
                " Keys in slots this node serves may have been written: re-read before writing again."
                if action == "write"
                else ""
            )
            return StorageError(
                f"Redis at {self._where} answered MOVED to {action} {shown} (slot {exc.slot_id} is served "
                f"by {exc.host}:{exc.port}): the server is a Redis Cluster, and this storage was made for a "
                "single server. Pass cluster=True (RedisStorage(url, cluster=True)), or give it a "
                f"redis.asyncio.RedisCluster as client=.{outcome}"
            )
        return StorageError(
            f"Redis at {self._where} refused to {action} {shown}: {type(exc).__name__}: {exc}"
        )

    def _reply_error(self, action: str, key: str, name: bytes, reply: object) -> StorageError:
        if reply == FOREIGN_TYPE or (isinstance(reply, ResponseError) and str(reply).startswith("WRONGTYPE")):
            return CorruptDocumentError(key, FOREIGN_TYPE_REASON, where(name))
        if reply == NOT_OUR_LAYOUT:
            return CorruptDocumentError(key, NOT_OUR_LAYOUT_REASON, where(name))
        if isinstance(reply, BaseException):
            return self._call_error(action, [key], reply)
        return StorageError(f"Redis at {self._where} gave an unexpected reply to {action} {key!r}: {reply!r}")


def _script_args(key: str, item: WriteItem, etag: str) -> tuple[bytes | str, ...]:
    value = item.value
    if not isinstance(value, bytes | bytearray | memoryview):
        raise InvalidItemError(key, f"the value must be bytes, got {type(value).__name__}")
    ttl = b""
    if item.ttl is not None:
        if not math.isfinite(item.ttl) or item.ttl * 1000 >= _MAX_TTL_MS:
            raise InvalidItemError(key, f"ttl {item.ttl!r} is too large for Redis; omit it to never expire")
        ttl = str(max(1, math.ceil(item.ttl * 1000))).encode()
    if item.if_match == ANY_ETAG:
        mode, expected = "a", ""
    elif item.if_match is None:
        mode, expected = "c", ""
    elif isinstance(item.if_match, str):
        mode, expected = "m", item.if_match
    else:
        raise InvalidItemError(key, f"if_match must be '*', None or an ETag str, got {item.if_match!r}")
    return mode, expected.encode("utf-8", "surrogateescape"), pack(etag, value), ttl


def _text(exc: BaseException) -> str:
    return str(exc).strip().rstrip(".") or "(no message)"


def _glob_escape(raw: bytes) -> bytes:
    return b"".join(b"\\" + bytes((c,)) if c in _GLOB_SPECIAL else bytes((c,)) for c in raw)


def _transport_for(client: object) -> Transport:
    if isinstance(client, RedisCluster):
        return ClusterTransport(client)
    if isinstance(client, Redis):
        return StandaloneTransport(client)
    raise TypeError(
        f"client must be a redis.asyncio.Redis or redis.asyncio.RedisCluster, got {type(client).__module__}."
        f"{type(client).__name__} (the synchronous redis.Redis cannot be used)"
    )


def _describe(client: Redis | RedisCluster) -> str:
    """Where the client connects, for error messages; never includes a password."""
    if isinstance(client, RedisCluster):
        nodes = client.get_nodes() or list(client.nodes_manager.startup_nodes.values())
        shown = ",".join(sorted(node.name for node in nodes)[:3])
        return f"cluster {shown}" if shown else "cluster"
    kwargs = client.connection_pool.connection_kwargs
    if "path" in kwargs:
        return f"unix:{kwargs['path']}"
    scheme = "rediss" if client.connection_pool.connection_class.__name__.startswith("SSL") else "redis"
    return f"{scheme}://{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}/{kwargs.get('db', 0)}"
