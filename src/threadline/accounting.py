"""The accounting features' objects (prices, admissions and budgets, rate limits, usage reports,
metrics), built once per process by the lifespan."""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

from threadline.adapters.limits_rate_limiter import LimitsRateLimiter, limits_redis, redis_storage
from threadline.adapters.prometheus_metrics import PrometheusMetrics
from threadline.db.admissions import PostgresAdmissions
from threadline.db.database import Database
from threadline.db.usage import PostgresUsageReports
from threadline.domain.pricing import PriceTable, load_price_table
from threadline.ports import RateLimiter, RunMetrics, TokenCounter, UsageReports
from threadline.service.admission import AdmissionControl
from threadline.settings import Settings

# Names of the rate limits: `chat` per user on the routes that start runs (they opt in with
# `opt={"rate_limit": CHAT}`), `auth_failures` per client IP on requests refused for their credentials.
CHAT = "chat"
AUTH_FAILURES = "auth_failures"


@dataclass(frozen=True, slots=True)
class Accounting:
    prices: PriceTable
    admission: AdmissionControl
    limiter: RateLimiter
    usage: UsageReports
    metrics: RunMetrics
    limits_redis: Redis

    async def aclose(self) -> None:
        await self.limits_redis.aclose()


def build_accounting(*, database: Database, counter: TokenCounter, settings: Settings) -> Accounting:
    quotas = settings.quotas
    rules = {CHAT: quotas.rate_limit, AUTH_FAILURES: quotas.auth_failure_limit}
    if settings.redis.url is None:
        raise RuntimeError("REDIS_URL must be set; `threadline serve` starts an embedded Redis.")
    redis = limits_redis(settings.redis.url, timeout_s=settings.redis.timeout_s)
    return Accounting(
        prices=load_price_table(quotas.price_table),
        admission=AdmissionControl(
            admissions=PostgresAdmissions(database), counter=counter, settings=settings
        ),
        limiter=LimitsRateLimiter(redis_storage(redis), rules, timeout_s=settings.redis.timeout_s),
        usage=PostgresUsageReports(database),
        metrics=PrometheusMetrics(),
        limits_redis=redis,
    )
