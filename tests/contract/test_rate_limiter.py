"""Contract tests every `RateLimiter` passes: `limits`' moving window in memory and in Redis."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from threadline.adapters.limits_rate_limiter import (
    LimitsRateLimiter,
    limits_redis,
    memory_storage,
    redis_storage,
)
from threadline.ports import RateLimiter

RULES = {"chat": "5/minute", "burst": "50/minute", "tight": "2/second"}


@pytest.fixture(params=["memory", "redis"])
async def limiter(request: pytest.FixtureRequest, redis_url: str) -> AsyncIterator[RateLimiter]:
    if request.param == "memory":
        yield LimitsRateLimiter(memory_storage(), RULES, timeout_s=5)
        return
    # The limiter's own client, as the app builds it: 200 concurrent hits queue for its 32 connections.
    redis = limits_redis(redis_url, timeout_s=5)
    try:
        yield LimitsRateLimiter(redis_storage(redis), RULES, timeout_s=5)
    finally:
        await redis.aclose()


def key() -> str:
    return f"key-{uuid.uuid4().hex}"


async def test_the_limit_admits_exactly_its_amount_then_refuses(limiter: RateLimiter) -> None:
    who = key()
    outcomes = [await limiter.hit("chat", who) for _ in range(7)]
    assert [allowed for allowed, _ in outcomes] == [True] * 5 + [False] * 2
    assert [quota.remaining for _, quota in outcomes] == [4, 3, 2, 1, 0, 0, 0]
    quota = outcomes[-1][1]
    assert (quota.limit, quota.window_s) == (5, 60)
    assert 55 <= quota.reset_s <= 60


async def test_concurrent_hits_never_exceed_the_limit(limiter: RateLimiter) -> None:
    who = key()
    results = await asyncio.gather(*(limiter.hit("burst", who) for _ in range(200)))
    assert sum(allowed for allowed, _ in results) == 50


async def test_keys_and_rules_are_counted_apart(limiter: RateLimiter) -> None:
    first, second = key(), key()
    for _ in range(5):
        await limiter.hit("chat", first)
    assert (await limiter.hit("chat", first))[0] is False
    assert (await limiter.hit("chat", second))[0] is True
    assert (await limiter.hit("burst", first))[0] is True


async def test_blocked_reports_a_full_window_without_counting(limiter: RateLimiter) -> None:
    who = key()
    assert await limiter.blocked("chat", who) is None
    for _ in range(4):
        await limiter.hit("chat", who)
    # Asking does not use up the last request.
    assert await limiter.blocked("chat", who) is None
    assert await limiter.blocked("chat", who) is None
    assert (await limiter.hit("chat", who))[0] is True
    blocked = await limiter.blocked("chat", who)
    assert blocked is not None
    assert blocked.remaining == 0
    assert blocked.reset_s > 0


async def test_the_window_slides(limiter: RateLimiter) -> None:
    who = key()
    assert [(await limiter.hit("tight", who))[0] for _ in range(3)] == [True, True, False]
    await asyncio.sleep(1.1)
    assert (await limiter.hit("tight", who))[0] is True


async def test_a_fresh_key_has_the_whole_limit_and_nothing_to_wait_for(limiter: RateLimiter) -> None:
    allowed, quota = await limiter.hit("chat", key())
    assert allowed
    assert quota.remaining == 4
    assert 0 < quota.reset_s <= 60
