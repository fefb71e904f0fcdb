"""RedisStorage: turnstate's shared storage on Redis or Redis Cluster."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from typing import Any, ClassVar

from redis.asyncio import Redis, RedisCluster
from redis.exceptions import NoScriptError, RedisClusterException, RedisError

from turnstate.errors import (
    CorruptDocumentError,
    InvalidKeyError,
    StorageError,
)
from turnstate.storage.base import (
    Capabilities,
    Storage,
    StoredItem,
    WriteItem,
    check_keys,
    check_write,
    settle_writes,
)
from turnstate_redis._client import DEFAULT_TIMEOUT, UNSET, Timeout, connect
from turnstate_redis._errors import RedisErrors
from turnstate_redis._layout import new_etag, unpack
from turnstate_redis._script import (
    CAS_SCRIPT,
    CAS_SHA,
    PRECONDITION_FAILED,
    READ_SCRIPT,
    READ_SHA,
    WRITTEN,
    script_args,
)
from turnstate_redis._transport import Command, TransportError

__all__ = ["DEFAULT_KEY_PREFIX", "DEFAULT_TIMEOUT", "RedisStorage"]

DEFAULT_KEY_PREFIX = "turnstate:"

_SCRIPT_LOAD_ATTEMPTS = 2
_GLOB_SPECIAL = frozenset(b"*?[]\\")


class RedisStorage(Storage):
    """Items as Redis strings under ``key_prefix``; reads and writes cost one round trip each.

    Build it from a URL (``redis://``, ``rediss://`` for TLS, ``unix://``; ``cluster=True`` for a Redis
    Cluster), and it owns the client and closes it in :meth:`aclose`. Or pass ``client=`` (a
    ``redis.asyncio.Redis`` or ``RedisCluster``): it is used as is and never closed.

    ``socket_timeout`` and ``socket_connect_timeout`` (seconds, default 5, ``None`` waits forever) apply
    to a client built from a URL; other keyword arguments go to redis-py's ``from_url``.

    ``StoredItem.expires_at`` is this host's clock plus the ``PTTL`` the server reported, read by the same
    script as the value (atomically, so it is that version's expiry).

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
        socket_timeout: Timeout = UNSET,
        socket_connect_timeout: Timeout = UNSET,
        **client_options: Any,
    ) -> None:
        self._prefix = _encoded_prefix(key_prefix)
        self._key_prefix = key_prefix
        self._closed = False
        connection = connect(
            url,
            client,
            cluster=cluster,
            socket_timeout=socket_timeout,
            socket_connect_timeout=socket_connect_timeout,
            options=client_options,
        )
        self._transport = connection.transport
        self._owns_client = connection.owned
        self._where = connection.server
        self._errors = RedisErrors(connection.server, standalone=connection.standalone)
        self._standalone = connection.standalone

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
        if self._standalone:
            commands: list[Command] = [("EVALSHA", READ_SHA, len(names), *names)]
            replies = await self._run_script("read", [unique], names[:1], commands)
        else:
            commands = [("EVALSHA", READ_SHA, 1, name) for name in names]
            replies = await self._run_script("read", [[key] for key in unique], names, commands)
        pairs: list[object] = []
        for reply in replies:
            if not isinstance(reply, list) or len(reply) % 2:
                raise self._errors.for_reply("read", unique[len(pairs) // 2], names[len(pairs) // 2], reply)
            pairs += reply
        if len(pairs) != 2 * len(unique):
            raise self._errors.for_reply("read", unique[0], names[0], replies)
        now = time.time()
        found: dict[str, StoredItem] = {}
        for index, (key, name) in enumerate(zip(unique, names, strict=True)):
            value, ttl_ms = pairs[2 * index], pairs[2 * index + 1]
            if value is None:
                continue
            if not isinstance(value, bytes) or not isinstance(ttl_ms, int):
                raise self._errors.for_reply("read", key, name, value)
            found[key] = unpack(key, name, value, None if ttl_ms < 0 else now + ttl_ms / 1000)
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
            commands.append(("EVALSHA", CAS_SHA, 1, name, *script_args(key, items[key], etag)))
        replies = await self._run_script("write", [[key] for key in keys], names, commands)
        return settle_writes(
            (key, self._outcome(key, name, etag, reply))
            for key, name, etag, reply in zip(keys, names, etags, replies, strict=True)
        )

    def _outcome(self, key: str, name: bytes, etag: str, reply: object) -> str | StorageError | None:
        """What the write script's ``reply`` for ``key`` means: its new ETag, None for a failed
        precondition, or the error."""
        if reply == WRITTEN:
            return etag
        if reply == PRECONDITION_FAILED:
            return None
        return self._errors.for_reply("write", key, name, reply)

    async def delete(self, keys: Collection[str]) -> None:
        check_keys(keys)
        if not keys:
            return
        unique = list(dict.fromkeys(keys))
        names = [self._name(key) for key in unique]
        replies = await self._execute("delete", unique, names, [("DEL", name) for name in names])
        for key, name, reply in zip(unique, names, replies, strict=True):
            if isinstance(reply, Exception):
                raise self._errors.for_reply("delete", key, name, reply)

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
            raise self._errors.for_call("list keys under", [prefix], exc) from exc

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
            raise self._errors.for_call(action, keys, exc) from exc

    async def _run_script(
        self, action: str, owners: list[list[str]], names: list[bytes], commands: list[Command]
    ) -> list[object]:
        """Run EVALSHA commands; where the server lacks the script, load the scripts and re-send just those.

        ``names[i]`` routes ``commands[i]``, which is about the keys ``owners[i]`` (named in errors). Both
        scripts are loaded together, so a
        server that lost them (a restart, SCRIPT FLUSH) costs one extra round trip, not one per script.
        NOSCRIPT means that command did not run, so re-sending it cannot apply a write twice.
        """
        replies = await self._execute(action, [key for keys in owners for key in keys], names, commands)
        for _ in range(_SCRIPT_LOAD_ATTEMPTS):
            missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
            if not missing:
                return replies
            again = await self._execute(
                action,
                [key for i in missing for key in owners[i]],
                [names[i] for i in missing],
                [commands[i] for i in missing],
                prelude=[("SCRIPT", "LOAD", READ_SCRIPT), ("SCRIPT", "LOAD", CAS_SCRIPT)],
            )
            for index, reply in zip(missing, again, strict=True):
                replies[index] = reply
        return replies


def _encoded_prefix(key_prefix: str) -> bytes:
    if not isinstance(key_prefix, str):
        raise TypeError(f"key_prefix must be a str, got {type(key_prefix).__name__}")
    try:
        return key_prefix.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"key_prefix {key_prefix!r} cannot be encoded as UTF-8") from exc


def _glob_escape(raw: bytes) -> bytes:
    return b"".join(b"\\" + bytes((c,)) if c in _GLOB_SPECIAL else bytes((c,)) for c in raw)
