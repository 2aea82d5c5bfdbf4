"""The `/chat` routes against real Postgres and the fake upstream."""

from __future__ import annotations

import uuid

import asyncpg
from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.conftest import AuthHeaders
from tests.support.fake_openai import Behaviour, FakeOpenAI
from tests.support.sse import parse_sse, reply_text

Client = AsyncTestClient[Litestar]


async def test_chat_returns_the_whole_reply_and_persists_it(
    client: Client, auth: AuthHeaders, user: str, upstream: FakeOpenAI, db: asyncpg.Pool
) -> None:
    upstream.behaviour = Behaviour(reply="The capital of France is Paris.")
    response = await client.post("/chat", json={"message": "Capital of France?"}, headers=auth(user))
    assert response.status_code == 200
    body = response.json()
    assert body["response"] == "The capital of France is Paris."
    assert body["status"] == "completed"
    reported = upstream.reported_usage[-1]
    assert body["usage"]["prompt_tokens"] == reported["prompt_tokens"]
    assert body["usage"]["completion_tokens"] == reported["completion_tokens"]
    assert body["usage"]["source"] == "measured"
    rows = await db.fetch(
        "SELECT role, content, status, seq FROM messages WHERE thread_id = $1 ORDER BY seq",
        uuid.UUID(body["thread_id"]),
    )
    assert [(r["role"], r["content"], r["status"], r["seq"]) for r in rows] == [
        ("user", "Capital of France?", None, 1),
        ("assistant", "The capital of France is Paris.", "completed", 2),
    ]
    usage_rows = await db.fetch("SELECT * FROM usage_events WHERE run_id = $1", uuid.UUID(body["run_id"]))
    assert len(usage_rows) == 1
    assert usage_rows[0]["total_tokens"] == reported["total_tokens"]
    assert usage_rows[0]["status"] == "completed"
    rollup = await db.fetchrow("SELECT runs, total_tokens FROM user_usage WHERE user_id = $1", user)
    assert rollup is not None
    assert (rollup["runs"], rollup["total_tokens"]) == (1, reported["total_tokens"])


async def test_stream_sends_start_tokens_usage_done_with_increasing_ids(
    client: Client, auth: AuthHeaders, user: str, upstream: FakeOpenAI
) -> None:
    upstream.behaviour = Behaviour(reply="one two three four")
    response = await client.post("/chat/stream", json={"message": "count"}, headers=auth(user))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.text.startswith("retry: ")
    events = parse_sse(response.content)
    types = [e.type for e in events]
    assert types[0] == "start"
    assert types[-2:] == ["usage", "done"]
    assert set(types[1:-2]) == {"token"}
    ids = [e.id for e in events if e.id is not None]
    assert len(ids) == len(events)
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    start, done = events[0].data, events[-1].data
    assert response.headers["location"] == f"/runs/{start['run_id']}/stream"
    assert start["stream_url"].startswith(response.headers["location"] + "?token=")
    assert done["status"] == "completed"
    assert done["run_id"] == start["run_id"]
    assert reply_text(events) == "one two three four"


async def test_history_shows_the_streamed_reply_and_can_be_cleared(
    client: Client, auth: AuthHeaders, user: str, upstream: FakeOpenAI
) -> None:
    upstream.behaviour = Behaviour(reply="Hello there.")
    await client.post("/chat/stream", json={"message": "hi"}, headers=auth(user))
    history = (await client.get("/chat/history", headers=auth(user))).json()
    assert history["message_count"] == 2
    assert [(m["role"], m["content"], m["status"]) for m in history["messages"]] == [
        ("user", "hi", None),
        ("assistant", "Hello there.", "completed"),
    ]
    thread_id = history["thread_id"]
    cleared = await client.delete("/chat/history", params={"thread_id": thread_id}, headers=auth(user))
    assert cleared.json() == {"success": True, "message": "History cleared.", "thread_id": thread_id}
    after = (await client.get("/chat/history", params={"thread_id": thread_id}, headers=auth(user))).json()
    assert after == {"thread_id": thread_id, "message_count": 0, "messages": []}


async def test_without_thread_id_the_latest_active_thread_is_reused(
    client: Client, auth: AuthHeaders, user: str
) -> None:
    first = (await client.post("/chat", json={"message": "one"}, headers=auth(user))).json()
    second = (await client.post("/chat", json={"message": "two"}, headers=auth(user))).json()
    assert first["thread_id"] == second["thread_id"]
    history = (await client.get("/chat/history", headers=auth(user))).json()
    assert [m["seq"] for m in history["messages"]] == [1, 2, 3, 4]


async def test_the_model_sees_the_system_prompt_and_earlier_messages(
    client: Client, auth: AuthHeaders, user: str, upstream: FakeOpenAI
) -> None:
    upstream.behaviour = Behaviour(reply="Noted.")
    await client.post("/chat", json={"message": "My name is Ada."}, headers=auth(user))
    await client.post("/chat", json={"message": "What is my name?"}, headers=auth(user))
    sent = upstream.requests[-1]["messages"]
    assert sent[0]["role"] == "system"
    assert "Current date and time" in sent[0]["content"]
    assert [(m["role"], m["content"]) for m in sent[1:]] == [
        ("user", "My name is Ada."),
        ("assistant", "Noted."),
        ("user", "What is my name?"),
    ]
    assert upstream.requests[-1]["stream_options"] == {"include_usage": True}


async def test_sessions_summarise_the_callers_threads(
    client: Client, auth: AuthHeaders, user: str, upstream: FakeOpenAI
) -> None:
    empty = (await client.get("/chat/sessions", headers=auth(user))).json()
    assert empty["total_threads"] == 0
    assert empty["thread_id"] is None
    reply = (await client.post("/chat", json={"message": "hello"}, headers=auth(user))).json()
    summary = (await client.get("/chat/sessions", headers=auth(user))).json()
    assert summary["user_id"] == user
    assert summary["thread_id"] == reply["thread_id"]
    assert summary["total_messages"] == 2
    assert summary["total_tokens_used"] == upstream.reported_usage[-1]["total_tokens"]
    assert (summary["total_threads"], summary["active_threads"]) == (1, 1)
    assert summary["session_start"] is not None


async def test_upstream_error_ends_with_error_then_failed_and_keeps_the_question(
    client: Client, auth: AuthHeaders, user: str, upstream: FakeOpenAI, db: asyncpg.Pool
) -> None:
    upstream.behaviour = Behaviour(fail_status=500)
    response = await client.post("/chat/stream", json={"message": "will fail"}, headers=auth(user))
    events = parse_sse(response.content)
    assert [e.type for e in events][-3:] == ["error", "usage", "done"]
    assert events[-3].data["code"] == "upstream_500"
    assert events[-1].data["status"] == "failed"
    run_id = uuid.UUID(events[0].data["run_id"])
    run = await db.fetchrow("SELECT status, error FROM runs WHERE id = $1", run_id)
    assert run is not None
    assert run["status"] == "failed"
    messages = await db.fetch(
        "SELECT role, content, status FROM messages WHERE run_id = $1 ORDER BY seq", run_id
    )
    assert [(m["role"], m["content"], m["status"]) for m in messages] == [
        ("user", "will fail", None),
        ("assistant", "", "failed"),
    ]
    assert await db.fetchval("SELECT count(*) FROM usage_events WHERE run_id = $1", run_id) == 1


async def test_chat_reports_a_failed_runs_error(
    client: Client, auth: AuthHeaders, user: str, upstream: FakeOpenAI
) -> None:
    upstream.behaviour = Behaviour(fail_status=500)
    body = (await client.post("/chat", json={"message": "will fail"}, headers=auth(user))).json()
    assert body["status"] == "failed"
    assert body["error"]["code"] == "upstream_500"
    assert body["response"] == ""


async def test_a_reply_cut_mid_stream_keeps_its_prefix(
    client: Client, auth: AuthHeaders, user: str, upstream: FakeOpenAI, db: asyncpg.Pool
) -> None:
    upstream.behaviour = Behaviour(reply="alpha beta gamma delta epsilon", reset_after=2)
    events = parse_sse((await client.post("/chat/stream", json={"message": "x"}, headers=auth(user))).content)
    assert events[-1].data["status"] == "failed"
    assert reply_text(events) == "alpha beta "
    content = await db.fetchval(
        "SELECT content FROM messages WHERE id = $1", uuid.UUID(events[0].data["message_id"])
    )
    assert content == "alpha beta "
    usage = next(e.data["usage"] for e in events if e.type == "usage")
    assert usage["source"] == "estimated"
    assert usage["completion_tokens"] > 0
