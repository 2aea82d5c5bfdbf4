"""The official `openai` Python SDK pointed at a live Threadline: the API key is the caller's JWT."""

from __future__ import annotations

import uuid

import asyncpg
import openai
import pytest
from openai import OpenAI

from tests.conftest import JWT_SECRET
from tests.support.fake_openai import Behaviour, FakeOpenAI
from tests.support.live_app import LiveApp
from threadline.http.auth import issue_token

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]


def client_for(app: LiveApp, user: str) -> OpenAI:
    return OpenAI(base_url=f"{app.url}/v1", api_key=issue_token(JWT_SECRET, user), max_retries=0, timeout=20)


async def test_create_returns_a_completion_and_the_thread_header(
    live_threadline: LiveApp, upstream: FakeOpenAI, user: str, db: asyncpg.Pool
) -> None:
    upstream.behaviour = Behaviour(reply="Paris.")
    client = client_for(live_threadline, user)
    raw = client.chat.completions.with_raw_response.create(
        model="default", messages=[{"role": "user", "content": "Capital of France?"}]
    )
    completion = raw.parse()
    assert completion.choices[0].message.content == "Paris."
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.total_tokens == upstream.reported_usage[-1]["total_tokens"]
    thread_id = uuid.UUID(raw.headers["x-thread-id"])
    contents = await db.fetch("SELECT content FROM messages WHERE thread_id = $1 ORDER BY seq", thread_id)
    assert [r["content"] for r in contents] == ["Capital of France?", "Paris."]


async def test_streaming_with_usage_continues_the_thread(
    live_threadline: LiveApp, upstream: FakeOpenAI, user: str
) -> None:
    client = client_for(live_threadline, user)
    first = client.chat.completions.with_raw_response.create(
        model="default", messages=[{"role": "user", "content": "remember 42"}]
    )
    thread_id = first.headers["x-thread-id"]
    upstream.behaviour = Behaviour(reply="You said forty two.", gap_s=0.01)
    stream = client.chat.completions.create(
        model="default",
        messages=[{"role": "user", "content": "what did I say?"}],
        stream=True,
        stream_options={"include_usage": True},
        extra_headers={"X-Thread-Id": thread_id},
    )
    chunks = list(stream)
    assert {c.object for c in chunks} == {"chat.completion.chunk"}
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "You said forty two."
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish == ["stop"]
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == upstream.reported_usage[-1]["completion_tokens"]
    prompt_users = [m["content"] for m in upstream.requests[-1]["messages"] if m["role"] == "user"]
    assert prompt_users == ["remember 42", "what did I say?"]


def test_models_and_errors_speak_the_sdks_types(
    live_threadline: LiveApp, upstream: FakeOpenAI, user: str
) -> None:
    client = client_for(live_threadline, user)
    assert "default" in [m.id for m in client.models.list()]
    with pytest.raises(openai.AuthenticationError):
        OpenAI(base_url=f"{live_threadline.url}/v1", api_key="not-a-jwt", max_retries=0).models.list()
    with pytest.raises(openai.UnprocessableEntityError):
        client.chat.completions.create(model="default", messages=[{"role": "user", "content": "hi"}], n=2)
    upstream.behaviour = Behaviour(fail_status=400, fail_times=1)
    with pytest.raises(openai.APIError):
        list(
            client.chat.completions.create(
                model="default", messages=[{"role": "user", "content": "fail"}], stream=True
            )
        )
