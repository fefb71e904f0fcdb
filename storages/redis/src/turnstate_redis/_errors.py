"""What redis-py raised or the server replied, as turnstate's errors, naming the server and the keys."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from redis.exceptions import (
    ClusterCrossSlotError,
    ClusterDownError,
    MovedError,
    ReadOnlyError,
    RedisClusterException,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from turnstate.errors import CorruptDocumentError, StorageError, StorageUnavailableError
from turnstate_redis._layout import FOREIGN_TYPE_REASON, NOT_OUR_LAYOUT_REASON, where
from turnstate_redis._script import FOREIGN_TYPE, NOT_OUR_LAYOUT
from turnstate_redis._transport import TransportError

_UNAVAILABLE = (
    RedisConnectionError,
    RedisTimeoutError,
    ClusterDownError,
    TryAgainError,
    ReadOnlyError,
    RedisClusterException,
    TransportError,
)


@dataclass(frozen=True, slots=True)
class RedisErrors:
    """Builds one storage's errors. ``server`` says where it connects (never with a password);
    ``standalone``: it was made for a single server rather than a cluster."""

    server: str
    standalone: bool

    def for_call(self, action: str, keys: Sequence[str], exc: BaseException) -> StorageError:
        """The error for a call that raised ``exc`` while it tried to ``action`` these keys."""
        shown = ", ".join(repr(k) for k in keys[:3]) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")
        if isinstance(exc, _UNAVAILABLE):
            outcome = (
                " Each key was written completely or not at all, but which is unknown: re-read before"
                " writing again."
                if action == "write"
                else ""
            )
            return StorageUnavailableError(
                f"Redis at {self.server} failed to {action} {shown}: {type(exc).__name__}: {_text(exc)}. "
                f"Nothing was retried.{outcome} The next call reconnects by itself."
            )
        if isinstance(exc, MovedError) and self.standalone:
            outcome = (
                " Keys in slots this node serves may have been written: re-read before writing again."
                if action == "write"
                else ""
            )
            return StorageError(
                f"Redis at {self.server} answered MOVED to {action} {shown} (slot {exc.slot_id} is served "
                f"by {exc.host}:{exc.port}): the server is a Redis Cluster, and this storage was made for a "
                "single server. Pass cluster=True (RedisStorage(url, cluster=True)), or give it a "
                f"redis.asyncio.RedisCluster as client=.{outcome}"
            )
        if isinstance(exc, ClusterCrossSlotError) and self.standalone:
            # a single server's read asks for all its keys in one command; a cluster refuses that
            return StorageError(
                f"Redis at {self.server} answered CROSSSLOT to {action} {shown} (keys in different hash "
                "slots): the server is a Redis Cluster, and this storage was made for a single server. "
                "Pass cluster=True (RedisStorage(url, cluster=True)), or give it a "
                "redis.asyncio.RedisCluster as client=."
            )
        return StorageError(
            f"Redis at {self.server} refused to {action} {shown}: {type(exc).__name__}: {exc}"
        )

    def for_reply(self, action: str, key: str, name: bytes, reply: object) -> StorageError:
        """The error for a reply about ``key`` (Redis key ``name``) that is neither success nor absence."""
        if reply == FOREIGN_TYPE or (isinstance(reply, ResponseError) and str(reply).startswith("WRONGTYPE")):
            return CorruptDocumentError(key, FOREIGN_TYPE_REASON, where(name))
        if reply == NOT_OUR_LAYOUT:
            return CorruptDocumentError(key, NOT_OUR_LAYOUT_REASON, where(name))
        if isinstance(reply, BaseException):
            return self.for_call(action, [key], reply)
        return StorageError(f"Redis at {self.server} gave an unexpected reply to {action} {key!r}: {reply!r}")


def _text(exc: BaseException) -> str:
    return str(exc).strip().rstrip(".") or "(no message)"
