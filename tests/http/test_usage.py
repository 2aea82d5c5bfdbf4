"""`GET /usage` and `GET /admin/usage`: tokens and cost of every run, priced from the price table."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import asyncpg
import pytest

from tests.conftest import AuthHeaders
from tests.support.accounting import Client, new_threads, unique
from tests.support.fake_openai import Behaviour, FakeOpenAI
from threadline.domain.models import Usage
from threadline.domain.pricing import load_price_table

PRICES = load_price_table(None)


async def make_agent(db: asyncpg.Pool, model: str) -> str:
    slug = unique("agent")
    await db.execute(
        "INSERT INTO agents (slug, name, system_prompt, model) VALUES ($1, $1, 'Be brief.', $2)", slug, model
    )
    return slug


def cost(model: str, usage: dict[str, int]) -> float:
    priced = PRICES.cost(
        model,
        Usage(prompt_tokens=usage["prompt_tokens"], completion_tokens=usage["completion_tokens"]),
    )
    assert priced is not None
    return float(priced)


async def test_usage_by_model_day_and_thread_with_costs(
    client: Client, auth: AuthHeaders, user: str, upstream: FakeOpenAI, db: asyncpg.Pool
) -> None:
    upstream.behaviour = Behaviour(reply="Four words of reply.")
    big = await make_agent(db, "gpt-4o")
    first = (await client.post("/chat", json={"message": "one"}, headers=auth(user))).json()
    second = (await client.post("/chat", json={"message": "two"}, headers=auth(user))).json()
    [big_thread] = await new_threads(db, user, 1, agent=big)
    third = (
        await client.post("/chat", json={"message": "3", "thread_id": big_thread}, headers=auth(user))
    ).json()
    assert first["thread_id"] == second["thread_id"] != third["thread_id"]

    by_model = (await client.get("/usage", params={"group_by": "model"}, headers=auth(user))).json()

    assert by_model["user_id"] == user
    groups = {group["key"]: group for group in by_model["groups"]}
    assert set(groups) == {"gpt-4o-mini", "gpt-4o"}
    mini, large = groups["gpt-4o-mini"], groups["gpt-4o"]
    assert (mini["runs"], large["runs"]) == (2, 1)
    assert mini["total_tokens"] == first["usage"]["total_tokens"] + second["usage"]["total_tokens"]
    assert mini["prompt_tokens"] == first["usage"]["prompt_tokens"] + second["usage"]["prompt_tokens"]
    assert mini["measured_runs"] == 2
    assert mini["cost_usd"] == pytest.approx(
        cost("gpt-4o-mini", first["usage"]) + cost("gpt-4o-mini", second["usage"])
    )
    assert large["cost_usd"] == pytest.approx(cost("gpt-4o", third["usage"]))
    totals = by_model["totals"]
    assert totals["runs"] == 3
    assert totals["total_tokens"] == mini["total_tokens"] + large["total_tokens"]
    assert totals["cost_usd"] == pytest.approx(mini["cost_usd"] + large["cost_usd"])

    by_day = (await client.get("/usage", headers=auth(user))).json()
    assert by_day["group_by"] == "day"
    assert [group["key"] for group in by_day["groups"]] == [datetime.now(UTC).date().isoformat()]
    assert by_day["groups"][0]["total_tokens"] == totals["total_tokens"]
    assert by_day["budget"]["daily"]["used"] == totals["total_tokens"]
    assert by_day["budget"]["daily"]["budget"] is None

    by_thread = (await client.get("/usage", params={"group_by": "thread"}, headers=auth(user))).json()
    threads = {group["key"]: group["runs"] for group in by_thread["groups"]}
    assert threads == {first["thread_id"]: 2, third["thread_id"]: 1}

    row = await db.fetchrow(
        "SELECT cost_usd, price_version FROM usage_events WHERE run_id = $1", third["run_id"]
    )
    assert row is not None
    assert row["price_version"] == PRICES.version
    assert row["cost_usd"] == Decimal(str(cost("gpt-4o", third["usage"])))


async def test_the_time_range_is_half_open_and_checked(
    client: Client, auth: AuthHeaders, user: str, upstream: FakeOpenAI
) -> None:
    await client.post("/chat", json={"message": "hello"}, headers=auth(user))
    now = datetime.now(UTC)
    earlier = {"from": (now - timedelta(days=3)).isoformat(), "to": (now - timedelta(days=2)).isoformat()}
    empty = (await client.get("/usage", params=earlier, headers=auth(user))).json()
    assert empty["groups"] == []
    assert empty["totals"]["runs"] == 0
    naive = {"from": (now - timedelta(hours=1)).replace(tzinfo=None).isoformat(timespec="seconds")}
    found = (await client.get("/usage", params=naive, headers=auth(user))).json()
    assert found["totals"]["runs"] == 1
    assert found["start"].endswith("Z") or found["start"].endswith("+00:00")
    for bad in (
        {"from": now.isoformat(), "to": (now - timedelta(days=1)).isoformat()},
        {"from": (now - timedelta(days=400)).isoformat()},
    ):
        response = await client.get("/usage", params=bad, headers=auth(user))
        assert response.status_code == 422, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
    for bad in ({"from": "yesterday"}, {"group_by": "user"}, {"group_by": "agent"}):
        response = await client.get("/usage", params=bad, headers=auth(user))
        assert response.status_code == 400, response.text


async def test_each_user_sees_only_their_own_usage(
    client: Client, auth: AuthHeaders, user: str, upstream: FakeOpenAI
) -> None:
    other = user + "-other"
    await client.post("/chat", json={"message": "mine"}, headers=auth(user))
    assert (await client.get("/usage", headers=auth(other))).json()["totals"]["runs"] == 0


async def test_admin_usage_is_for_admins_and_covers_everyone(
    client: Client, auth: AuthHeaders, user: str, upstream: FakeOpenAI
) -> None:
    other = user + "-other"
    mine = (await client.post("/chat", json={"message": "a"}, headers=auth(user))).json()
    theirs = (await client.post("/chat", json={"message": "b"}, headers=auth(other))).json()

    forbidden = await client.get("/admin/usage", headers=auth(user))
    assert forbidden.status_code == 403
    assert forbidden.headers["content-type"].startswith("application/problem+json")

    admin = auth("root", admin=True)
    by_user = (await client.get("/admin/usage", params={"group_by": "user"}, headers=admin)).json()
    tokens = {group["key"]: group["total_tokens"] for group in by_user["groups"]}
    assert tokens[user] == mine["usage"]["total_tokens"]
    assert tokens[other] == theirs["usage"]["total_tokens"]
    assert by_user["user_id"] is None
    one = (
        await client.get("/admin/usage", params={"group_by": "agent", "user_id": other}, headers=admin)
    ).json()
    assert one["user_id"] == other
    assert [(group["key"], group["runs"]) for group in one["groups"]] == [("default", 1)]
