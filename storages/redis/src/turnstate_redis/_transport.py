"""How commands reach Redis: one packed write per connection, and never a hidden retry.

redis-py's own pipelines retry a batch after a connection error, which would replay a compare-and-set
whose first attempt may already have applied. These transports send each batch once, on one connection
per server, and hand back every reply (error replies as exception objects) for the caller to judge.
A connection that failed or was interrupted is closed, never returned to the pool half-read.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

from redis.asyncio import Redis, RedisCluster
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import AskError, MovedError, ResponseError, TryAgainError
from redis.exceptions import ConnectionError as RedisConnectionError

Command = tuple[bytes | str | int, ...]
"""One Redis command: its name and arguments. Keys and values are bytes; the rest is ASCII."""

_SCAN_COUNT = 1000
_MAX_ROUNDS = 5
"""Sends per cluster batch: the first plus redirections (MOVED, ASK, TRYAGAIN), none of which ran."""


class TransportError(Exception):
    """A cluster batch kept being redirected; none of the redirected commands ran."""


async def _exchange(
    conn: AbstractConnection,
    commands: Sequence[Command],
    prelude: Sequence[Command] = (),
    asking: frozenset[int] = frozenset(),
) -> list[object]:
    """Send ``prelude`` then ``commands`` in one packed write; read every reply.

    An error reply to a command becomes its result; an error reply to the prelude is raised after all
    replies are read. Commands whose index is in ``asking`` are preceded by ASKING (a cluster redirect).
    """
    wire: list[Command] = list(prelude)
    for index, command in enumerate(commands):
        if index in asking:
            wire.append(("ASKING",))
        wire.append(command)
    try:
        await conn.send_packed_command(conn.pack_commands(wire), check_health=False)
        prelude_error: ResponseError | None = None
        for _ in prelude:
            try:
                await conn.read_response(disable_decoding=True)
            except ResponseError as exc:
                prelude_error = prelude_error or exc
        replies: list[object] = []
        for index in range(len(commands)):
            if index in asking:
                await conn.read_response(disable_decoding=True)
            try:
                replies.append(await conn.read_response(disable_decoding=True))
            except ResponseError as exc:
                replies.append(exc)
    except BaseException:
        # Replies may still be on the wire (a cancelled read, an error that is not a reply): the
        # connection cannot serve another caller.
        await conn.disconnect(nowait=True)
        raise
    if prelude_error is not None:
        raise prelude_error
    return replies


class Transport(abc.ABC):
    """Runs batches of single-key commands against one Redis deployment."""

    @abc.abstractmethod
    async def execute(
        self, keys: Sequence[bytes], commands: Sequence[Command], prelude: Sequence[Command] = ()
    ) -> list[object]:
        """Run ``commands`` (``keys[i]`` is the key of ``commands[i]``) in one round trip per server.

        ``prelude`` is sent ahead of the commands on every connection used. Returns one reply per
        command, an error reply as its ResponseError. A connection failure raises the redis error: the
        commands sent on that connection may or may not have run.
        """

    @abc.abstractmethod
    def scan(self, match: bytes) -> AsyncIterator[bytes]:
        """Yield every key matching the glob ``match`` on every primary (possibly more than once)."""

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Close the client's connections (only called when the storage owns the client)."""


class StandaloneTransport(Transport):
    """A single Redis server (TCP, TLS or unix socket), through the client's connection pool."""

    def __init__(self, client: Redis) -> None:
        self._client = client
        self._pool = client.connection_pool

    async def execute(
        self, keys: Sequence[bytes], commands: Sequence[Command], prelude: Sequence[Command] = ()
    ) -> list[object]:
        conn = await self._pool.get_connection()  # type: ignore[no-untyped-call]
        try:
            await _drop_if_stale(conn)
            return await _exchange(conn, commands, prelude)
        finally:
            await self._pool.release(conn)

    async def scan(self, match: bytes) -> AsyncIterator[bytes]:
        cursor: bytes | int = 0
        while True:
            (reply,) = await self.execute([b""], [("SCAN", cursor, "MATCH", match, "COUNT", _SCAN_COUNT)])
            cursor, keys = _scan_reply(reply)
            for key in keys:
                yield key
            if cursor in (b"0", 0):
                return

    async def aclose(self) -> None:
        await self._client.aclose()


class ClusterTransport(Transport):
    """A Redis Cluster: commands grouped by the primary that owns each key's slot, sent in parallel.

    MOVED, ASK and TRYAGAIN replies mean the command did not run, so those commands are re-sent to
    the node named in the reply. After a connection failure the slot map is reloaded on the next call.
    """

    def __init__(self, client: RedisCluster) -> None:
        self._client = client
        self._reload_slots = False

    async def _ready(self) -> None:
        await self._client.initialize()
        if self._reload_slots:
            self._reload_slots = False
            await self._client.nodes_manager.initialize()

    async def execute(
        self, keys: Sequence[bytes], commands: Sequence[Command], prelude: Sequence[Command] = ()
    ) -> list[object]:
        await self._ready()
        client = self._client
        replies: list[object] = [None] * len(commands)
        pending = list(range(len(commands)))
        targets: dict[int, ClusterNode] = {}
        asking: set[int] = set()
        for round_no in range(_MAX_ROUNDS):
            groups: dict[str, tuple[ClusterNode, list[int]]] = {}
            for index in pending:
                node = targets.get(index) or client.get_node_from_key(keys[index])  # type: ignore[arg-type]
                if node is None:
                    raise TransportError(f"no cluster node serves key {keys[index]!r}")
                groups.setdefault(node.name, (node, []))[1].append(index)
            outcomes = await asyncio.gather(
                *(
                    self._send_to(node, [commands[i] for i in indexes], prelude, asking, indexes)
                    for node, indexes in groups.values()
                ),
                return_exceptions=True,
            )
            failure: BaseException | None = None
            for (_, indexes), outcome in zip(groups.values(), outcomes, strict=True):
                if isinstance(outcome, BaseException):
                    failure = failure or outcome
                    continue
                for index, reply in zip(indexes, outcome, strict=True):
                    replies[index] = reply
            if failure is not None:
                if isinstance(failure, Exception):
                    self._reload_slots = True
                raise failure
            pending, targets, asking = await self._redirections(pending, replies)
            if not pending:
                return replies
            if round_no:
                await asyncio.sleep(0.05 * round_no)
        raise TransportError(f"cluster kept redirecting after {_MAX_ROUNDS} sends: {replies[pending[0]]}")

    async def _redirections(
        self, sent: list[int], replies: list[object]
    ) -> tuple[list[int], dict[int, ClusterNode], set[int]]:
        """Pick out the commands that were redirected (and so did not run) and where they go next."""
        pending: list[int] = []
        targets: dict[int, ClusterNode] = {}
        asking: set[int] = set()
        reloaded = False
        for index in sent:
            reply = replies[index]
            if not isinstance(reply, AskError | TryAgainError):
                continue
            pending.append(index)
            if isinstance(reply, MovedError) and not reloaded:
                reloaded = True
                await self._client.nodes_manager.initialize()
            if isinstance(reply, AskError):
                node = self._client.get_node(host=reply.host, port=reply.port)
                if node is None and not reloaded:
                    reloaded = True
                    await self._client.nodes_manager.initialize()
                    node = self._client.get_node(host=reply.host, port=reply.port)
                if node is not None:
                    targets[index] = node
                if not isinstance(reply, MovedError):
                    asking.add(index)
        return pending, targets, asking

    async def _send_to(
        self,
        node: ClusterNode,
        commands: list[Command],
        prelude: Sequence[Command],
        asking: set[int],
        indexes: list[int],
    ) -> list[object]:
        conn = node.acquire_connection()
        try:
            await _drop_if_stale(conn)
            ask = frozenset(i for i, index in enumerate(indexes) if index in asking)
            return await _exchange(conn, commands, prelude, ask)
        finally:
            node.release(conn)

    async def scan(self, match: bytes) -> AsyncIterator[bytes]:
        await self._ready()
        for node in self._client.get_primaries():
            cursor: bytes | int = 0
            while True:
                (reply,) = await self._send_to(
                    node, [("SCAN", cursor, "MATCH", match, "COUNT", _SCAN_COUNT)], (), set(), [0]
                )
                cursor, keys = _scan_reply(reply)
                for key in keys:
                    yield key
                if cursor in (b"0", 0):
                    break

    async def aclose(self) -> None:
        await self._client.aclose()


async def _drop_if_stale(conn: AbstractConnection) -> None:
    """Close a pooled connection the server has closed (or that holds unread data) before using it.

    It reconnects when the batch is sent, so the first call after a server restart succeeds. redis-py's
    pool makes the same check only when maintenance notifications are off, which is not its default.
    """
    if not conn.is_connected:
        return
    check: Any = getattr(conn, "can_read", None) or conn.can_read_destructive
    try:
        stale = bool(await check())
    except (RedisConnectionError, OSError):
        stale = True
    if stale:
        await conn.disconnect()


def _scan_reply(reply: object) -> tuple[bytes | int, list[bytes]]:
    if isinstance(reply, Exception):
        raise reply
    if not isinstance(reply, list | tuple) or len(reply) != 2:
        raise TransportError(f"unexpected SCAN reply {reply!r}")
    cursor, keys = reply
    return cursor, list(keys)
