"""`LimitsRateLimiter`: named request limits on the `limits` library's moving window, in Redis or memory.

Why the moving window: it keeps the time of every request still inside the window and admits one
only while fewer than the limit are there, in one Lua script on Redis. So it is exact across any
number of processes sharing the Redis: 500 requests at once against 60/minute admit exactly 60.
The sliding window counter estimates the previous window's share (it can admit more or fewer than
the limit at a window edge), and the fixed window admits up to twice the limit across an edge. The
cost is memory: one list entry per admitted request, at most `limit` per key.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Mapping
from typing import Any

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from redis.asyncio import BlockingConnectionPool, Redis

from threadline.domain.usage import Quota

KEY_PREFIX = "threadline:limits"
# Each check holds a connection for two round trips; 32 serve thousands of requests a second.
POOL_SIZE = 32


def limits_redis(url: str, *, timeout_s: float, connections: int = POOL_SIZE) -> Redis:
    """A Redis client of the limiter's own: a blocking pool, so a burst waits up to `timeout_s` for a
    connection instead of failing (and being let through), and SSE readers blocked on the event log
    never hold the connections the limiter needs."""
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=connections,
        timeout=timeout_s,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
    )
    return Redis.from_pool(pool)  # the client owns the pool: aclose() disconnects it


def redis_storage(redis: Redis) -> RedisStorage:
    """Limits on `redis`'s connection pool (and so its timeouts)."""
    # `limits` types its pass-through options as scalars; a pool is what redis-py takes here.
    shared: dict[str, Any] = {"connection_pool": redis.connection_pool}
    return RedisStorage("async+redis://", implementation="redispy", key_prefix=KEY_PREFIX, **shared)


def memory_storage() -> MemoryStorage:
    """Limits inside one process, for tests of the port; they hold only within that process."""
    return MemoryStorage()


class LimitsRateLimiter:
    """The `RateLimiter` port: `rules` maps a rule's name to a rate such as "60/minute"."""

    def __init__(self, storage: Storage, rules: Mapping[str, str], *, timeout_s: float) -> None:
        self._limiter = MovingWindowRateLimiter(storage)
        self._rules: dict[str, RateLimitItem] = {name: parse(rate) for name, rate in rules.items()}
        self._timeout_s = timeout_s

    async def hit(self, rule: str, key: str) -> tuple[bool, Quota]:
        item = self._rules[rule]
        async with asyncio.timeout(self._timeout_s):
            allowed = await self._limiter.hit(item, rule, key)
            stats = await self._limiter.get_window_stats(item, rule, key)
        return allowed, _quota(item, stats.reset_time, stats.remaining)

    async def blocked(self, rule: str, key: str) -> Quota | None:
        item = self._rules[rule]
        async with asyncio.timeout(self._timeout_s):
            stats = await self._limiter.get_window_stats(item, rule, key)
        return _quota(item, stats.reset_time, stats.remaining) if stats.remaining <= 0 else None


def _quota(item: RateLimitItem, reset_at: float, remaining: int) -> Quota:
    # `reset_at` is when the oldest request in the window leaves it, freeing a slot.
    window_s = item.get_expiry()
    reset_s = min(window_s, max(0, math.ceil(reset_at - time.time()))) if remaining < item.amount else 0
    return Quota(limit=item.amount, remaining=max(0, remaining), reset_s=reset_s, window_s=window_s)
