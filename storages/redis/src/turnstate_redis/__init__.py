"""Redis and Redis Cluster storage for turnstate.

::

    from turnstate_redis import RedisStorage

    storage = RedisStorage("redis://localhost:6379", key_prefix="mybot:")
"""

from turnstate_redis.storage import DEFAULT_KEY_PREFIX, RedisStorage

__all__ = ["DEFAULT_KEY_PREFIX", "RedisStorage"]
