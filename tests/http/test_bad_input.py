"""Bad input answers 4xx problem+json, never 5xx, and never reaches the model."""

from __future__ import annotations

import uuid

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.conftest import AuthHeaders
from tests.support.fake_openai import FakeOpenAI

Client = AsyncTestClient[Litestar]

JSON = {"content-type": "application/json"}

BAD_BODIES: dict[str, bytes] = {
    "nul byte in message": b'{"message": "a\\u0000b"}',
    "nul byte in metadata": b'{"message": "ok", "metadata": {"k": "a\\u0000b"}}',
    "invalid utf-8": b'{"message": "\xff\xfe"}',
    "deeply nested metadata": b'{"message": "ok", "metadata": {"a": ' + b"[" * 5000 + b"]" * 5000 + b"}}",
    "unknown field": b'{"message": "ok", "role": "admin"}',
    "wrong type": b'{"message": 42}',
    "missing message": b'{"thread_id": null}',
    "malformed thread id": b'{"message": "ok", "thread_id": "not-a-uuid"}',
    "malformed agent slug": b'{"message": "ok", "agent": "../etc"}',
    "empty message": b'{"message": "   "}',
    "not json": b"message=hello",
    "json array": b'["hello"]',
    "truncated json": b'{"message": "hel',
}


@pytest.mark.parametrize("route", ["/chat", "/chat/stream"])
@pytest.mark.parametrize("case", sorted(BAD_BODIES))
async def test_bad_bodies_get_4xx_problem_json_and_no_model_call(
    client: Client, auth: AuthHeaders, user: str, upstream: FakeOpenAI, route: str, case: str
) -> None:
    response = await client.post(route, content=BAD_BODIES[case], headers=auth(user, **JSON))
    assert 400 <= response.status_code < 500, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["status"] == response.status_code
    assert problem["title"]
    assert problem["detail"]
    assert problem["detail"] != problem["title"]
    assert upstream.requests == []


async def test_a_message_over_the_length_limit_is_422(
    client: Client, auth: AuthHeaders, user: str, upstream: FakeOpenAI
) -> None:
    response = await client.post("/chat", json={"message": "x" * 32_001}, headers=auth(user))
    assert response.status_code == 422
    assert response.json()["code"] == "message_too_long"
    assert upstream.requests == []


async def test_a_body_over_the_size_limit_is_413(
    client: Client, auth: AuthHeaders, user: str, upstream: FakeOpenAI
) -> None:
    body = b'{"message": "ok", "metadata": {"blob": "' + b"x" * 1_100_000 + b'"}}'
    response = await client.post("/chat", content=body, headers=auth(user, **JSON))
    assert response.status_code == 413
    assert upstream.requests == []


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/chat/history?thread_id=nope"),
        ("GET", "/chat/history?limit=0"),
        ("GET", "/chat/history?limit=many"),
        ("DELETE", "/chat/history?thread_id=123"),
        ("GET", "/runs/not-a-uuid"),
        ("GET", f"/runs/{uuid.uuid4()}/stream?last_event_id=abc"),
    ],
)
async def test_bad_query_and_path_values_are_4xx(
    client: Client, auth: AuthHeaders, user: str, method: str, path: str
) -> None:
    response = await client.request(method, path, headers=auth(user))
    assert 400 <= response.status_code < 500


async def test_a_reused_client_message_id_with_another_body_is_422(
    client: Client, auth: AuthHeaders, user: str, upstream: FakeOpenAI
) -> None:
    key = str(uuid.uuid4())
    first = await client.post("/chat", json={"message": "one", "client_message_id": key}, headers=auth(user))
    assert first.status_code == 200
    again = await client.post("/chat", json={"message": "one", "client_message_id": key}, headers=auth(user))
    assert again.json()["run_id"] == first.json()["run_id"]
    assert len(upstream.requests) == 1
    other = await client.post("/chat", json={"message": "two", "client_message_id": key}, headers=auth(user))
    assert other.status_code == 422
    assert other.json()["code"] == "idempotency_key_reused"
    assert len(upstream.requests) == 1
