"""`/v1`: OpenAI-compatible chat completions persisted into threads (the official SDK: tests/e2e)."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.conftest import AuthHeaders
from tests.support.fake_openai import Behaviour, FakeOpenAI

Client = AsyncTestClient[Litestar]


def completion_body(text: str, **extra: Any) -> dict[str, Any]:
    return {"model": "default", "messages": [{"role": "user", "content": text}], **extra}


def chunks(body: bytes) -> list[Any]:
    found: list[Any] = []
    for line in body.decode().split("\n"):
        if line.startswith("data: "):
            found.append(line[6:] if line[6:] == "[DONE]" else msgspec.json.decode(line[6:]))
    return found


async def test_a_completion_answers_in_openai_shape_and_lands_in_a_new_thread(
    client: Client, auth: AuthHeaders, user: str, upstream: FakeOpenAI, db: asyncpg.Pool
) -> None:
    upstream.behaviour = Behaviour(reply="Four.")
    response = await client.post("/v1/chat/completions", json=completion_body("2+2?"), headers=auth(user))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "Four.", "refusal": None}
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["model"] == "gpt-4o-mini"
    reported = upstream.reported_usage[-1]
    assert body["usage"]["prompt_tokens"] == reported["prompt_tokens"]
    assert body["usage"]["total_tokens"] == reported["total_tokens"]
    thread_id = uuid.UUID(response.headers["x-thread-id"])
    rows = await db.fetch(
        "SELECT role, content, user_id, metadata->>'source' AS source FROM messages"
        " WHERE thread_id = $1 ORDER BY seq",
        thread_id,
    )
    assert [(r["role"], r["content"], r["user_id"]) for r in rows] == [
        ("user", "2+2?", user),
        ("assistant", "Four.", user),
    ]
    assert rows[0]["source"] == "openai-compat"
    run = (await client.get(f"/runs/{response.headers['x-run-id']}", headers=auth(user))).json()
    assert run["usage"]["total_tokens"] == body["usage"]["total_tokens"]
    again = await client.post("/v1/chat/completions", json=completion_body("again"), headers=auth(user))
    assert again.headers["x-thread-id"] != str(thread_id)


async def test_x_thread_id_continues_a_thread_with_its_history(
    client: Client, auth: AuthHeaders, user: str, upstream: FakeOpenAI
) -> None:
    first = await client.post(
        "/v1/chat/completions", json=completion_body("my name is Ada"), headers=auth(user)
    )
    thread_id = first.headers["x-thread-id"]
    headers = auth(user, **{"X-Thread-Id": thread_id})
    second = await client.post(
        "/v1/chat/completions", json=completion_body("what is my name?"), headers=headers
    )
    assert second.headers["x-thread-id"] == thread_id
    prompt = upstream.requests[-1]["messages"]
    assert [m["content"] for m in prompt if m["role"] == "user"] == ["my name is Ada", "what is my name?"]
    stranger = await client.post(
        "/v1/chat/completions",
        json=completion_body("hi"),
        headers=auth("intruder", **{"X-Thread-Id": thread_id}),
    )
    assert stranger.status_code == 404


async def test_a_stream_sends_chunks_finish_and_the_usage_chunk_when_asked(
    client: Client, auth: AuthHeaders, user: str, upstream: FakeOpenAI
) -> None:
    upstream.behaviour = Behaviour(reply="a b c")
    body = completion_body("go", stream=True, stream_options={"include_usage": True})
    response = await client.post("/v1/chat/completions", json=body, headers=auth(user))
    assert response.status_code == 200
    found = chunks(response.content)
    assert found[-1] == "[DONE]"
    events = found[:-1]
    assert {e["object"] for e in events} == {"chat.completion.chunk"}
    assert len({e["id"] for e in events}) == 1
    assert events[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    text = "".join(e["choices"][0]["delta"].get("content", "") for e in events if e["choices"])
    assert text == "a b c"
    assert events[-2]["choices"][0]["finish_reason"] == "stop"
    assert events[-1]["choices"] == []
    assert events[-1]["usage"]["completion_tokens"] == upstream.reported_usage[-1]["completion_tokens"]
    plain = await client.post(
        "/v1/chat/completions", json=completion_body("go", stream=True), headers=auth(user)
    )
    assert all(e["choices"] for e in chunks(plain.content)[:-1])


async def test_a_failed_run_is_an_error(
    client: Client, auth: AuthHeaders, user: str, upstream: FakeOpenAI
) -> None:
    upstream.behaviour = Behaviour(fail_status=400, fail_times=2)
    response = await client.post("/v1/chat/completions", json=completion_body("x"), headers=auth(user))
    assert response.status_code == 502
    streamed = await client.post(
        "/v1/chat/completions", json=completion_body("x", stream=True), headers=auth(user)
    )
    found = chunks(streamed.content)
    assert "error" in found[-2]
    assert found[-1] == "[DONE]"


async def test_models_lists_the_agents(client: Client, auth: AuthHeaders, user: str) -> None:
    response = await client.get("/v1/models", headers=auth(user))
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "list"
    assert "default" in [m["id"] for m in body["data"]]


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"messages": [{"role": "user", "content": "hi"}]}, 400),
        (completion_body("hi", bogus=1), 400),
        (completion_body("hi", n=2), 422),
        (completion_body("hi", tools=[{"type": "function", "function": {"name": "f"}}]), 422),
        ({"model": "m", "messages": [{"role": "assistant", "content": "hi"}]}, 422),
        ({"model": "m", "messages": []}, 422),
        (completion_body(""), 422),
    ],
)
async def test_bad_requests_are_4xx_and_call_no_model(
    client: Client, auth: AuthHeaders, user: str, upstream: FakeOpenAI, body: dict[str, Any], status: int
) -> None:
    response = await client.post("/v1/chat/completions", json=body, headers=auth(user))
    assert response.status_code == status, response.text
    assert upstream.requests == []


async def test_a_malformed_thread_header_is_a_4xx(client: Client, auth: AuthHeaders, user: str) -> None:
    response = await client.post(
        "/v1/chat/completions", json=completion_body("hi"), headers=auth(user, **{"X-Thread-Id": "nope"})
    )
    assert response.status_code == 400


async def test_an_invalid_body_field_named_like_a_dependency_is_400_not_500(
    client: Client, auth: AuthHeaders, user: str, upstream: FakeOpenAI
) -> None:
    body = completion_body("x", store={})
    response = await client.post("/v1/chat/completions", json=body, headers=auth(user))
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert upstream.requests == []
