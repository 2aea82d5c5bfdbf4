"""Upstream failures: retried before the first token, a stall mid-reply ends the run `timeout`."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.conftest import AuthHeaders
from tests.support.fake_openai import Behaviour, FakeOpenAI
from tests.support.sse import parse_sse, reply_text
from threadline.app import create_app
from threadline.settings import Settings

Client = AsyncTestClient[Litestar]


@pytest.fixture(scope="module")
async def patient_client(base_env: dict[str, str]) -> AsyncIterator[Client]:
    """An app that retries the model once and gives up on a stream silent for half a second."""
    env = {**base_env, "THREADLINE_MODEL_MAX_RETRIES": "1", "THREADLINE_MODEL_IDLE_TIMEOUT": "0.5"}
    async with AsyncTestClient(app=create_app(Settings.from_env(env)), timeout=30) as client:
        yield client


async def test_a_failure_before_the_first_token_is_retried(
    patient_client: Client, auth: AuthHeaders, user: str, upstream: FakeOpenAI, db: asyncpg.Pool
) -> None:
    upstream.behaviour = Behaviour(
        reply="second time lucky", fail_status=500, fail_times=1, retry_after_s=0.001
    )
    body = (await patient_client.post("/chat", json={"message": "try"}, headers=auth(user))).json()
    assert (body["status"], body["response"]) == ("completed", "second time lucky")
    assert len(upstream.requests) == 2
    questions = await db.fetchval("SELECT count(*) FROM messages WHERE user_id = $1 AND role = 'user'", user)
    assert questions == 1


async def test_a_stall_mid_reply_ends_the_run_as_timeout_with_its_prefix(
    patient_client: Client, auth: AuthHeaders, user: str, upstream: FakeOpenAI, db: asyncpg.Pool
) -> None:
    upstream.behaviour = Behaviour(reply="alpha beta gamma delta", stall_after=2, stall_s=3.0)
    response = await patient_client.post("/chat/stream", json={"message": "stall"}, headers=auth(user))
    events = parse_sse(response.content)
    assert reply_text(events) == "alpha beta "
    assert [e.type for e in events][-3:] == ["error", "usage", "done"]
    assert events[-3].data["code"] == "upstream_stalled"
    assert events[-1].data["status"] == "timeout"
    run_id = uuid.UUID(events[0].data["run_id"])
    row = await db.fetchrow(
        "SELECT r.status, m.content, m.status AS message_status FROM runs r"
        " JOIN messages m ON m.id = r.assistant_message_id WHERE r.id = $1",
        run_id,
    )
    assert row is not None
    assert (row["status"], row["content"], row["message_status"]) == ("timeout", "alpha beta ", "failed")
    # No silent regeneration: one model call, however the stream ended.
    assert len(upstream.requests) == 1
