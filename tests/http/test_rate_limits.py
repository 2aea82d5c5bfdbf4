"""Per-user rate limits on the routes that start runs: RateLimit-* headers, 429 with Retry-After before
any work, and one window shared by every app process through Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.conftest import AuthHeaders
from tests.support.accounting import Client, app_client, model_calls, unique
from tests.support.fake_openai import FakeOpenAI


@pytest.fixture(scope="module")
async def limited(base_env: dict[str, str]) -> AsyncIterator[Client]:
    async with app_client(base_env, THREADLINE_RATE_LIMIT="3/minute") as client:
        yield client


async def test_chat_responses_tell_the_client_its_quota(
    limited: Client, auth: AuthHeaders, user: str, upstream: FakeOpenAI
) -> None:
    question = unique("quota")
    remaining = []
    for path in ("/chat", "/chat/stream", "/chat"):
        response = await limited.post(path, json={"message": question}, headers=auth(user))
        assert response.status_code == 200, response.text
        assert response.headers["ratelimit-limit"] == "3"
        assert response.headers["ratelimit-policy"] == "3;w=60"
        assert 0 < int(response.headers["ratelimit-reset"]) <= 60
        remaining.append(response.headers["ratelimit-remaining"])
    assert remaining == ["2", "1", "0"]

    refused = await limited.post("/chat/stream", json={"message": question}, headers=auth(user))

    assert refused.status_code == 429
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert refused.json()["code"] == "rate_limited"
    assert refused.json()["status"] == 429
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.headers["ratelimit-remaining"] == "0"
    assert len(model_calls(upstream, question)) == 3
    # Reading is not limited: only the routes that start runs count.
    for _ in range(5):
        history = await limited.get("/chat/history", headers=auth(user))
        assert history.status_code == 200
        assert "ratelimit-limit" not in history.headers


async def test_the_limit_counts_requests_before_their_body_is_read(
    limited: Client, auth: AuthHeaders, user: str, upstream: FakeOpenAI
) -> None:
    for _ in range(3):
        bad = await limited.post("/chat", json={"message": ""}, headers=auth(user))
        assert bad.status_code == 422
    refused = await limited.post("/chat", json={"message": "fine"}, headers=auth(user))
    assert refused.status_code == 429
    assert upstream.requests == []


async def test_users_have_windows_of_their_own(limited: Client, auth: AuthHeaders, user: str) -> None:
    for _ in range(3):
        await limited.post("/chat", json={"message": "x"}, headers=auth(user))
    assert (await limited.post("/chat", json={"message": "x"}, headers=auth(user))).status_code == 429
    other = await limited.post("/chat", json={"message": "x"}, headers=auth(user + "-other"))
    assert other.status_code == 200


async def test_two_apps_on_one_redis_share_one_window(
    base_env: dict[str, str], auth: AuthHeaders, user: str, upstream: FakeOpenAI
) -> None:
    question = unique("shared")
    async with (
        app_client(base_env, THREADLINE_RATE_LIMIT="5/minute") as first,
        app_client(base_env, THREADLINE_RATE_LIMIT="5/minute") as second,
    ):
        statuses = []
        for client in (first, second, first, second, first, second, first):
            response = await client.post("/chat", json={"message": question}, headers=auth(user))
            statuses.append(response.status_code)
    assert statuses == [200] * 5 + [429] * 2
    assert len(model_calls(upstream, question)) == 5
