"""Every SQL query in docs/analytics.md runs on a freshly migrated database with known data, and its
result is what the data says it should be."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from statistics import quantiles
from typing import Any

import asyncpg
import pytest

from tests.conftest import with_database
from threadline.db import migrate
from threadline.lifespan import EMBEDDING_DIM

DOC = Path(__file__).resolve().parents[2] / "docs" / "analytics.md"
NAMED_QUERY = re.compile(r"<!-- query: (\w+) -->\s*```sql\n(.*?)```", re.DOTALL)
ANY_QUERY = re.compile(r"```sql\n")


@dataclass(frozen=True)
class Call:
    """One seeded usage row."""

    user: str
    hours_ago: float
    model: str
    agent: str
    status: str
    prompt: int
    completion: int
    cost: Decimal | None
    ttft_ms: int | None
    source: str = "measured"
    purpose: str = "run"

    @property
    def total(self) -> int:
        return self.prompt + self.completion


CALLS = [
    Call("alice", 1, "gpt-4o-mini", "default", "completed", 1_000, 500, Decimal("0.00045"), 200),
    Call("alice", 2, "gpt-4o-mini", "default", "completed", 2_000, 1_000, Decimal("0.0009"), 300),
    Call("alice", 26, "gpt-4o", "support", "failed", 500, 0, Decimal("0.00125"), None, "estimated"),
    Call("bob", 3, "gpt-4o", "support", "completed", 4_000, 1_000, Decimal("0.02"), 400),
    Call("bob", 50, "gpt-4o-mini", "default", "cancelled", 100, 50, Decimal("0.000045"), 250, "estimated"),
    Call("carol", 120, "gpt-4o-mini", "default", "completed", 300, 100, Decimal("0.000105"), 500),
    Call("carol", 40 * 24, "gpt-4o", "default", "completed", 10_000, 10_000, Decimal("0.125"), 900),
    Call("dave", 0.5, "threadline-echo", "default", "timeout", 10, 5, Decimal(0), 100, "estimated"),
    Call("dave", 0.4, "threadline-echo", "default", "completed", 20, 5, None, None, purpose="title"),
]
# (user, status, days ago)
THREADS = [
    ("alice", "active", 1),
    ("alice", "abandoned", 3),
    ("bob", "active", 2),
    ("bob", "closed", 10),
    ("carol", "abandoned", 5),
    ("dave", "active", 0.1),
    ("carol", "abandoned", 45),
]
LIMITS = [("alice", 10_000, None), ("bob", 5_000, 100_000), ("carol", None, 50_000)]
INSERT_THREAD = (
    "INSERT INTO threads (id, user_id, agent, status, created_at) VALUES ($1, $2, 'default', $3, $4)"
)
INSERT_LIMITS = (
    "INSERT INTO user_limits (user_id, daily_token_budget, monthly_token_budget) VALUES ($1, $2, $3)"
)
# A rollup that drifted from its rows: what the reconciliation query is there to find.
DRIFTED = ("eve", 999)


@dataclass(frozen=True)
class Seeded:
    now: datetime
    pool: asyncpg.Pool

    def at(self, call: Call) -> datetime:
        return self.now - timedelta(hours=call.hours_ago)

    def day(self, call: Call) -> date:
        return self.at(call).date()

    @property
    def today(self) -> date:
        return self.now.date()

    def within(self, call: Call, hours: float) -> bool:
        return call.hours_ago < hours


@pytest.fixture(scope="module")
async def seeded(postgres_server_url: str) -> AsyncIterator[Seeded]:
    name = f"threadline_analytics_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(postgres_server_url, timeout=10)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = with_database(postgres_server_url, name)
    await asyncio.to_thread(migrate.upgrade, url, embedding_dim=EMBEDDING_DIM)
    pool = await asyncpg.create_pool(
        url, min_size=1, max_size=2, timeout=10, server_settings={"TimeZone": "UTC"}
    )
    assert pool is not None
    try:
        now: datetime = await pool.fetchval("SELECT now()")
        await seed(pool, now)
        yield Seeded(now=now, pool=pool)
    finally:
        await pool.close()
        admin = await asyncpg.connect(postgres_server_url, timeout=10)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


async def seed(pool: asyncpg.Pool, now: datetime) -> None:
    async with pool.acquire() as connection, connection.transaction():
        await connection.execute(
            "INSERT INTO agents (slug, name, system_prompt) VALUES ('support', 'Support', 'Help.')"
        )
        for user, status, days in THREADS:
            await connection.execute(
                INSERT_THREAD, uuid.uuid4(), user, status, now - timedelta(days=days),
            )  # fmt: skip
        for call in CALLS:
            await connection.execute(
                """
                INSERT INTO usage_events (
                    run_id, user_id, agent, model, provider, status, purpose, prompt_tokens,
                    completion_tokens, total_tokens, source, cost_usd, price_version, ttft_ms, created_at
                ) VALUES ($1, $2, $3, $4, 'openai', $5, $6, $7, $8, $9, $10, $11, 'test', $12, $13)
                """,
                uuid.uuid4(), call.user, call.agent, call.model, call.status, call.purpose, call.prompt,
                call.completion, call.total, call.source, call.cost, call.ttft_ms,
                now - timedelta(hours=call.hours_ago),
            )  # fmt: skip
        await connection.execute(
            """
            INSERT INTO user_usage (user_id, runs, prompt_tokens, completion_tokens, total_tokens, cost_usd)
            SELECT user_id, count(*) FILTER (WHERE purpose = 'run'), sum(prompt_tokens),
                   sum(completion_tokens), sum(total_tokens), coalesce(sum(cost_usd), 0)
            FROM usage_events GROUP BY user_id
            """
        )
        await connection.execute("INSERT INTO user_usage (user_id, total_tokens) VALUES ($1, $2)", *DRIFTED)
        for user, daily, monthly in LIMITS:
            await connection.execute(
                INSERT_LIMITS, user, daily, monthly,
            )  # fmt: skip


def documented_queries() -> dict[str, str]:
    text = DOC.read_text()
    named = {name: sql.strip() for name, sql in NAMED_QUERY.findall(text)}
    assert len(named) == len(ANY_QUERY.findall(text)), "every sql block needs a <!-- query: name --> line"
    return named


def recent(seed: Seeded, days: int) -> list[Call]:
    """Calls whose UTC day is within the last `days` days, as `day > today - days` selects them."""
    return [call for call in CALLS if seed.day(call) > seed.today - timedelta(days=days)]


def rounded(value: Decimal, places: int = 6) -> Decimal:
    return value.quantize(Decimal(1).scaleb(-places))


def cost(calls: list[Call]) -> Decimal:
    return rounded(sum((call.cost or Decimal(0) for call in calls), Decimal(0)))


def check_top_users(seed: Seeded, rows: list[dict[str, Any]]) -> None:
    calls = recent(seed, 30)
    users = sorted(
        {call.user for call in calls}, key=lambda user: (-sum(c.total for c in calls if c.user == user), user)
    )
    assert rows == [
        {
            "user_id": user,
            "runs": sum(1 for c in calls if c.user == user and c.purpose == "run"),
            "total_tokens": sum(c.total for c in calls if c.user == user),
            "cost_usd": cost([c for c in calls if c.user == user]),
        }
        for user in users
    ]
    assert [row["user_id"] for row in rows] == ["bob", "alice", "carol", "dave"]


def check_active_users_24h(seed: Seeded, rows: list[dict[str, Any]]) -> None:
    assert rows == [{"active_users": 3}]  # alice, bob and dave; carol's runs are days old


def check_cost_per_day(seed: Seeded, rows: list[dict[str, Any]]) -> None:
    by_day: dict[date, list[Call]] = defaultdict(list)
    for call in recent(seed, 30):
        by_day[seed.day(call)].append(call)
    assert rows == [
        {
            "day": day,
            "runs": sum(1 for c in calls if c.purpose == "run"),
            "total_tokens": sum(c.total for c in calls),
            "cost_usd": cost(calls),
        }
        for day, calls in sorted(by_day.items())
    ]


def check_cost_by_agent_this_month(seed: Seeded, rows: list[dict[str, Any]]) -> None:
    month = seed.today.replace(day=1)
    groups: dict[tuple[str, str], list[Call]] = defaultdict(list)
    for call in CALLS:
        if seed.day(call) >= month:
            groups[(call.agent, call.model)].append(call)
    expected: list[dict[str, Any]] = [
        {
            "agent": agent,
            "model": model,
            "runs": sum(1 for c in calls if c.purpose == "run"),
            "total_tokens": sum(c.total for c in calls),
            "cost_usd": cost(calls),
        }
        for (agent, model), calls in groups.items()
    ]
    expected.sort(key=lambda row: (-row["cost_usd"], row["agent"], row["model"]))
    assert rows == expected


def check_success_rate_by_agent(seed: Seeded, rows: list[dict[str, Any]]) -> None:
    assert rows == [
        {"agent": "default", "runs": 5, "completed": 3, "failed": 1, "success_rate": Decimal("0.600")},
        {"agent": "support", "runs": 2, "completed": 1, "failed": 1, "success_rate": Decimal("0.500")},
    ]


def check_ttft_by_model(seed: Seeded, rows: list[dict[str, Any]]) -> None:
    def percentiles(values: list[int]) -> tuple[float, float]:
        if len(values) == 1:
            return float(values[0]), float(values[0])
        cuts = quantiles(values, n=100, method="inclusive")  # percentile_cont's interpolation
        return cuts[49], cuts[94]

    by_model: dict[str, list[int]] = defaultdict(list)
    for call in CALLS:
        if call.purpose == "run" and call.ttft_ms is not None and call.hours_ago < 7 * 24:
            by_model[call.model].append(call.ttft_ms)
    expected = []
    for model, values in sorted(by_model.items()):
        p50, p95 = percentiles(values)
        expected.append({"model": model, "runs": len(values), "p50_ttft_ms": p50, "p95_ttft_ms": p95})

    def settled(row: dict[str, Any]) -> dict[str, Any]:  # float noise of the interpolation aside
        return {
            **row,
            "p50_ttft_ms": round(row["p50_ttft_ms"], 6),
            "p95_ttft_ms": round(row["p95_ttft_ms"], 6),
        }

    rows = [settled(row) for row in rows]
    assert rows == [settled(row) for row in expected]
    assert rows[0] == {"model": "gpt-4o", "runs": 1, "p50_ttft_ms": 400.0, "p95_ttft_ms": 400.0}
    # 200, 250, 300, 500: halfway between 250 and 300; 85% of the way from 300 to 500.
    assert rows[1] == {"model": "gpt-4o-mini", "runs": 4, "p50_ttft_ms": 275.0, "p95_ttft_ms": 470.0}


def check_abandoned_thread_rate(seed: Seeded, rows: list[dict[str, Any]]) -> None:
    assert rows == [{"threads": 6, "abandoned": 2, "abandoned_rate": Decimal("0.333")}]


def check_estimated_share(seed: Seeded, rows: list[dict[str, Any]]) -> None:
    calls = [call for call in CALLS if call.hours_ago < 30 * 24]
    expected = []
    for model in sorted({call.model for call in calls}):
        total = sum(c.total for c in calls if c.model == model)
        estimated = sum(c.total for c in calls if c.model == model and c.source == "estimated")
        share = (Decimal(estimated) / Decimal(total)).quantize(Decimal("0.001"))
        expected.append(
            {"model": model, "total_tokens": total, "estimated_tokens": estimated, "estimated_share": share}
        )
    assert rows == expected
    assert [row["estimated_share"] for row in rows] == [Decimal("0.091"), Decimal("0.030"), Decimal("0.375")]


def check_budget_headroom(seed: Seeded, rows: list[dict[str, Any]]) -> None:
    def used_today(user: str) -> int:
        return sum(c.total for c in CALLS if c.user == user and seed.day(c) == seed.today)

    expected: list[dict[str, Any]] = [
        {
            "user_id": user,
            "daily_token_budget": daily,
            "used_today": used_today(user),
            "percent_used": (Decimal(100 * used_today(user)) / daily).quantize(Decimal("0.1")),
        }
        for user, daily, _ in LIMITS
        if daily is not None
    ]
    expected.sort(key=lambda row: (-row["percent_used"], row["user_id"]))
    assert rows == expected


def check_reconciliation(seed: Seeded, rows: list[dict[str, Any]]) -> None:
    user, tokens = DRIFTED
    assert rows == [{"user_id": user, "rollup_tokens": tokens, "row_tokens": 0, "daily_tokens": 0}]


CHECKS: dict[str, Callable[[Seeded, list[dict[str, Any]]], None]] = {
    "top_users": check_top_users,
    "active_users_24h": check_active_users_24h,
    "cost_per_day": check_cost_per_day,
    "cost_by_agent_this_month": check_cost_by_agent_this_month,
    "success_rate_by_agent": check_success_rate_by_agent,
    "ttft_by_model": check_ttft_by_model,
    "abandoned_thread_rate": check_abandoned_thread_rate,
    "estimated_share": check_estimated_share,
    "budget_headroom": check_budget_headroom,
    "reconciliation": check_reconciliation,
}


def test_every_documented_query_has_a_check() -> None:
    assert set(documented_queries()) == set(CHECKS)


@pytest.mark.parametrize("name", sorted(CHECKS))
async def test_documented_query_gives_the_expected_result(seeded: Seeded, name: str) -> None:
    sql = documented_queries()[name]
    async with seeded.pool.acquire() as connection:
        rows = [dict(row) for row in await connection.fetch(sql)]
    CHECKS[name](seeded, rows)
