"""Token budgets and the live-run cap: reserve before the model call, settle at the run's end, and
refuse (429, Retry-After, nothing saved, no model call) whatever does not fit, however many race."""

from __future__ import annotations

import math
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import msgspec
import pytest

from tests.conftest import AuthHeaders
from tests.support.accounting import (
    Client,
    app_client,
    model_calls,
    new_threads,
    post_concurrently,
    services_of,
    unique,
)
from tests.support.fake_openai import Behaviour, FakeOpenAI
from threadline.domain.models import Agent
from threadline.domain.usage import next_midnight, next_month

pytestmark = pytest.mark.timeout(90)
MAX_OUTPUT = 16
SET_LIMITS = """
    INSERT INTO user_limits (user_id, daily_token_budget, monthly_token_budget) VALUES ($1, $2, $3)
    ON CONFLICT (user_id) DO UPDATE SET daily_token_budget = $2, monthly_token_budget = $3
"""


@pytest.fixture(scope="module")
async def budget_client(base_env: dict[str, str]) -> AsyncIterator[Client]:
    async with app_client(
        base_env,
        THREADLINE_MAX_STREAMS_PER_USER="100",
        THREADLINE_RATE_LIMIT="1000/minute",
        THREADLINE_MAX_OUTPUT_TOKENS=str(MAX_OUTPUT),
    ) as client:
        yield client


async def reservation(client: Client, db: asyncpg.Pool, question: str) -> int:
    """What a first message of a thread reserves: the question, the system prompt, the longest reply."""
    row = await db.fetchrow(
        "SELECT slug, name, system_prompt, max_output_tokens FROM agents WHERE is_default"
    )
    assert row is not None
    agent = msgspec.convert(dict(row), Agent)
    # Pure arithmetic on the app's own counter and settings (its database lives on the app's loop).
    return services_of(client).accounting.admission.fixed_tokens(agent, question)


async def saved_messages(db: asyncpg.Pool, user: str) -> int:
    count: int = await db.fetchval("SELECT count(*) FROM messages WHERE user_id = $1", user)
    return count


async def test_fifty_requests_at_the_edge_of_a_budget_never_overspend_it(
    budget_client: Client, auth: AuthHeaders, user: str, upstream: FakeOpenAI, db: asyncpg.Pool
) -> None:
    question = unique("edge")
    reserve = await reservation(budget_client, db, question)
    budget = 10 * reserve + reserve // 2
    await db.execute(SET_LIMITS, user, budget, None)
    threads = await new_threads(db, user, 50)
    # Slow enough that no run ends (and gives back its unused reservation) while the 50 are decided.
    upstream.behaviour = Behaviour(reply="one two three", ttft_s=1.5)

    bodies = [{"message": question, "thread_id": thread} for thread in threads]
    responses = await post_concurrently(budget_client, "/chat", bodies, auth(user))

    statuses = sorted(response.status_code for response in responses)
    assert statuses == [200] * 10 + [429] * 40
    refused = [response for response in responses if response.status_code == 429]
    for response in refused:
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["code"] == "token_budget_exceeded"
        # The budget is not spent, only held by runs in progress: worth retrying soon.
        assert response.headers["retry-after"] == "2"
    assert len(model_calls(upstream, question)) == 10
    assert await saved_messages(db, user) == 20
    spent = await db.fetchval("SELECT sum(total_tokens) FROM usage_events WHERE user_id = $1", user)
    assert spent == sum(usage["total_tokens"] for usage in upstream.reported_usage)
    assert spent <= budget
    # Every run settled: nothing is reserved any more, so the unused reservations are usable again.
    assert await db.fetchval("SELECT count(*) FROM run_admissions WHERE user_id = $1", user) == 0
    again = await budget_client.post(
        "/chat", json={"message": question, "thread_id": threads[-1]}, headers=auth(user)
    )
    assert again.status_code == 200, again.text


async def test_a_spent_daily_budget_refuses_until_midnight_and_saves_nothing(
    budget_client: Client, auth: AuthHeaders, user: str, upstream: FakeOpenAI, db: asyncpg.Pool
) -> None:
    question = unique("daily")
    reserve = await reservation(budget_client, db, question)
    upstream.behaviour = Behaviour(reply="a short reply")
    await db.execute(SET_LIMITS, user, reserve + 1, None)
    first = await budget_client.post("/chat", json={"message": question}, headers=auth(user))
    assert first.status_code == 200, first.text
    used = first.json()["usage"]["total_tokens"]
    assert 0 < used < reserve
    before = await saved_messages(db, user)

    second = await budget_client.post("/chat/stream", json={"message": question}, headers=auth(user))

    assert second.status_code == 429
    problem = second.json()
    assert problem["code"] == "token_budget_exceeded"
    assert f"daily token budget is {reserve + 1} and {used} are used" in problem["detail"]
    now = datetime.now(UTC)
    expected = math.ceil((next_midnight(now) - now).total_seconds())
    assert abs(int(second.headers["retry-after"]) - expected) <= 5
    assert len(model_calls(upstream, question)) == 1
    assert await saved_messages(db, user) == before


async def test_the_monthly_budget_and_the_configured_defaults_apply_too(
    base_env: dict[str, str], auth: AuthHeaders, user: str, upstream: FakeOpenAI, db: asyncpg.Pool
) -> None:
    question = unique("monthly")
    async with app_client(base_env, THREADLINE_MONTHLY_TOKEN_BUDGET="10") as client:
        refused = await client.post("/chat", json={"message": question}, headers=auth(user))
        assert refused.status_code == 429
        assert "monthly token budget is 10" in refused.json()["detail"]
        now = datetime.now(UTC)
        retry_after = int(refused.headers["retry-after"])
        assert abs(retry_after - math.ceil((next_month(now) - now).total_seconds())) <= 5
        # A user's own budget overrides the default.
        await db.execute(SET_LIMITS, user, None, 1_000_000)
        allowed = await client.post("/chat", json={"message": question}, headers=auth(user))
        assert allowed.status_code == 200, allowed.text
    assert len(model_calls(upstream, question)) == 1


async def test_at_most_max_streams_runs_per_user_at_once(
    client: Client, auth: AuthHeaders, user: str, upstream: FakeOpenAI, db: asyncpg.Pool
) -> None:
    question = unique("streams")
    threads = await new_threads(db, user, 8)
    upstream.behaviour = Behaviour(reply="slow reply", ttft_s=1.5)

    bodies = [{"message": question, "thread_id": thread} for thread in threads]
    responses = await post_concurrently(client, "/chat", bodies, auth(user))

    assert sorted(response.status_code for response in responses) == [200] * 5 + [429] * 3
    for body, response in zip(bodies, responses, strict=True):
        if response.status_code == 429:
            assert response.json()["code"] == "too_many_streams"
            assert response.headers["retry-after"] == "2"
            # Refused before anything was saved: the thread is as empty as it was.
            thread_id = uuid.UUID(body["thread_id"])
            assert await db.fetchval("SELECT message_count FROM threads WHERE id = $1", thread_id) == 0
    assert len(model_calls(upstream, question)) == 5
    # Once they have ended, the slots are free again.
    again = await client.post(
        "/chat", json={"message": question, "thread_id": threads[0]}, headers=auth(user)
    )
    assert again.status_code == 200


async def test_admins_set_a_users_budgets_and_see_where_they_stand(
    client: Client, auth: AuthHeaders, user: str, upstream: FakeOpenAI
) -> None:
    upstream.behaviour = Behaviour(reply="fine")
    admin = auth("admin-" + user, admin=True)
    path = f"/admin/users/{user}/limits"
    assert (
        await client.put(path, json={"daily_token_budget": 50_000}, headers=auth(user))
    ).status_code == 403
    written = await client.put(path, json={"daily_token_budget": 50_000}, headers=admin)
    assert written.status_code == 200, written.text
    assert written.json()["daily_token_budget"] == 50_000
    assert written.json()["monthly_token_budget"] is None
    reply = (await client.post("/chat", json={"message": "hello"}, headers=auth(user))).json()
    read = (await client.get(path, headers=admin)).json()
    daily = read["budget"]["daily"]
    assert daily["budget"] == 50_000
    assert daily["used"] == reply["usage"]["total_tokens"]
    assert daily["reserved"] == 0
    assert daily["remaining"] == 50_000 - daily["used"]
    assert read["budget"]["monthly"]["budget"] is None
    assert read["budget"]["monthly"]["remaining"] is None
    bad = await client.put(path, json={"daily_token_budget": -1}, headers=admin)
    assert bad.status_code == 400


async def test_the_reply_is_capped_at_what_the_reservation_counted_on_only_under_a_budget(
    budget_client: Client, auth: AuthHeaders, user: str, upstream: FakeOpenAI, db: asyncpg.Pool
) -> None:
    upstream.behaviour = Behaviour(reply=" ".join(["word"] * 40))
    free = unique("free")
    unbounded = await budget_client.post("/chat", json={"message": free}, headers=auth(user))
    [sent] = model_calls(upstream, free)
    assert "max_tokens" not in sent
    assert unbounded.json()["usage"]["completion_tokens"] == 40

    await db.execute(SET_LIMITS, user, 1_000_000, None)
    budgeted = unique("budgeted")
    capped = await budget_client.post("/chat", json={"message": budgeted}, headers=auth(user))
    [sent] = model_calls(upstream, budgeted)
    assert sent["max_tokens"] == MAX_OUTPUT
    assert capped.json()["usage"]["completion_tokens"] == MAX_OUTPUT
