"""Cache entries in the ledger's Redis, shared by every router process on every host.

Keys, under the ledger's ``key_prefix``: ``<prefix>:cache:<key>`` holds an entry (``SET PX``:
Redis expires it), ``<prefix>:cache:index`` is a sorted set of entry keys by expiry, which one
Lua script per write trims to ``max_entries`` (soonest to expire first). Like the ledger, only a
single Redis (not Redis Cluster) is supported.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import redis

from router.ledger.redis import connect

__all__ = ["RedisCacheStore"]

_PUT = """
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], KEYS[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[4])
local excess = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[5])
if excess > 0 then
  local oldest = redis.call('ZRANGE', KEYS[2], 0, excess - 1)
  redis.call('ZREMRANGEBYRANK', KEYS[2], 0, excess - 1)
  for i = 1, #oldest do redis.call('DEL', oldest[i]) end
end
return 1
"""


class RedisCacheStore:
    """Entries in Redis; an outage raises ``redis.RedisError`` (the cache counts a miss)."""

    name = "redis"

    def __init__(
        self,
        url: str,
        max_entries: int,
        *,
        key_prefix: str = "router",
        socket_timeout: float = 0.5,
        client: redis.Redis | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.max_entries = max_entries
        self.prefix = f"{key_prefix}:cache:"
        self._index = f"{key_prefix}:cache:index"
        self._clock = clock
        # No client-side retries: a cache that waits out an outage is slower than no cache.
        self._client = client or connect(url, socket_timeout)
        self._put = self._client.register_script(_PUT)

    def get(self, key: str) -> bytes | None:
        return self._client.get(self.prefix + key)

    def put(self, key: str, value: bytes, ttl: float) -> None:
        now = self._clock()
        self._put(
            keys=[self.prefix + key, self._index],
            args=[value, max(1, int(ttl * 1000)), repr(now + ttl), repr(now), self.max_entries],
        )

    def delete(self, key: str) -> None:
        self._client.delete(self.prefix + key)
        self._client.zrem(self._index, self.prefix + key)

    def count(self) -> int:
        return int(self._client.zcount(self._index, repr(self._clock()), "+inf"))

    def close(self) -> None:
        self._client.close()
