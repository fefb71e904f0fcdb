"""How a RedisStorage reaches Redis: a client it builds from a URL (and owns), or one it is given."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from redis.asyncio import Redis, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from turnstate_redis._transport import ClusterTransport, StandaloneTransport, Transport

DEFAULT_TIMEOUT = 5.0


class Unset(enum.Enum):
    """The type of :data:`UNSET`, the default of options whose ``None`` means something."""

    UNSET = enum.auto()


UNSET: Literal[Unset.UNSET] = Unset.UNSET
Timeout = float | Literal[Unset.UNSET] | None


@dataclass(frozen=True, slots=True)
class Connection:
    """A storage's way to Redis. ``owned``: the storage built the client and closes it."""

    transport: Transport
    server: str
    owned: bool

    @property
    def standalone(self) -> bool:
        """A single server, not a cluster."""
        return isinstance(self.transport, StandaloneTransport)


def connect(
    url: str | None,
    client: Redis | RedisCluster | None,
    *,
    cluster: bool,
    socket_timeout: Timeout,
    socket_connect_timeout: Timeout,
    options: Mapping[str, Any],
) -> Connection:
    """Use ``client`` as given (refusing options meant for a URL), or build one from ``url``."""
    if client is not None:
        given = [
            name
            for name, value in (
                ("url", url is not None),
                ("cluster", cluster),
                ("socket_timeout", socket_timeout is not UNSET),
                ("socket_connect_timeout", socket_connect_timeout is not UNSET),
                *((option, True) for option in options),
            )
            if value
        ]
        if given:
            raise TypeError(
                f"RedisStorage(client=...) takes no {', '.join(given)}: configure the client you pass"
            )
        return Connection(_transport_for(client), _describe(client), owned=False)
    if not isinstance(url, str) or not url:
        raise TypeError("RedisStorage needs a URL such as 'redis://localhost:6379' or client=...")
    settings: dict[str, Any] = {
        "socket_timeout": DEFAULT_TIMEOUT if socket_timeout is UNSET else socket_timeout,
        "socket_connect_timeout": (
            DEFAULT_TIMEOUT if socket_connect_timeout is UNSET else socket_connect_timeout
        ),
        # The storage never replays a command; a failed connect fails the call at once.
        "retry": Retry(NoBackoff(), 0),
        **options,
    }
    built = RedisCluster.from_url(url, **settings) if cluster else Redis.from_url(url, **settings)
    return Connection(_transport_for(built), _describe(built), owned=True)


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
