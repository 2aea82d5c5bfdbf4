"""`/ai-sdk/chat`: the Vercel AI SDK's UI message stream over Threadline's runs (the wire, part by part).

The real `ai` package parses these streams in tests/e2e/test_ai_sdk_node.py.
"""

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
from threadline.service.conversations import thread_id_for_chat

Client = AsyncTestClient[Litestar]


def ui_body(chat_id: str, text: str, *, message_id: str = "m1", **extra: Any) -> dict[str, Any]:
    """What `DefaultChatTransport` posts for `sendMessage({text})`."""
    return {
        "id": chat_id,
        "messages": [{"id": message_id, "role": "user", "parts": [{"type": "text", "text": text}]}],
        "trigger": "submit-message",
        **extra,
    }


def parts(body: bytes) -> list[Any]:
    """Every `data:` payload in order; `[DONE]` as the string."""
    found: list[Any] = []
    for block in body.decode().split("\n\n"):
        for line in block.split("\n"):
            if line.startswith("data: "):
                payload = line[6:]
                found.append(payload if payload == "[DONE]" else msgspec.json.decode(payload))
    return found


async def test_a_reply_streams_as_ui_message_parts_and_lands_in_the_chat_thread(
    client: Client, auth: AuthHeaders, user: str, upstream: FakeOpenAI, db: asyncpg.Pool
) -> None:
    upstream.behaviour = Behaviour(reply="Paris is the capital.")
    response = await client.post("/ai-sdk/chat", json=ui_body("chat-1", "Capital?"), headers=auth(user))
    assert response.status_code == 200
    assert response.headers["x-vercel-ai-ui-message-stream"] == "v1"
    assert response.headers["content-type"].startswith("text/event-stream")
    found = parts(response.content)
    types = [p if p == "[DONE]" else p["type"] for p in found]
    assert types[:2] == ["start", "text-start"]
    assert types[-3:] == ["text-end", "finish", "[DONE]"]
    assert set(types[2:-3]) == {"text-delta"}
    assert "".join(p["delta"] for p in found if p != "[DONE]" and p["type"] == "text-delta") == (
        "Paris is the capital."
    )
    thread_id = thread_id_for_chat(user, "chat-1")
    start, finish = found[0], found[-2]
    assert start["messageMetadata"]["threadId"] == str(thread_id)
    assert response.headers["x-thread-id"] == str(thread_id)
    assert finish["finishReason"] == "stop"
    usage = finish["messageMetadata"]["usage"]
    assert usage["inputTokens"] == upstream.reported_usage[-1]["prompt_tokens"]
    assert usage["outputTokens"] == upstream.reported_usage[-1]["completion_tokens"]
    rows = await db.fetch(
        "SELECT role, content, metadata->>'source' AS source, user_id FROM messages"
        " WHERE thread_id = $1 ORDER BY seq",
        thread_id,
    )
    assert [(r["role"], r["content"]) for r in rows] == [
        ("user", "Capital?"),
        ("assistant", "Paris is the capital."),
    ]
    assert rows[0]["source"] == "ai-sdk"
    assert {r["user_id"] for r in rows} == {user}
    assert start["messageId"] == str(
        await db.fetchval("SELECT id FROM messages WHERE thread_id = $1 AND seq = 2", thread_id)
    )


async def test_the_next_message_of_a_chat_continues_its_thread_and_only_the_newest_is_persisted(
    client: Client, auth: AuthHeaders, user: str, upstream: FakeOpenAI, db: asyncpg.Pool
) -> None:
    await client.post("/ai-sdk/chat", json=ui_body("chat-2", "first"), headers=auth(user))
    history = [
        {"id": "m1", "role": "user", "parts": [{"type": "text", "text": "first"}]},
        {"id": "a1", "role": "assistant", "metadata": {"x": 1},
         "parts": [{"type": "step-start"}, {"type": "text", "text": "Echo: first", "state": "done"}]},
        {"id": "m2", "role": "user", "parts": [
            {"type": "text", "text": "second"},
            {"type": "file", "url": "data:,x", "mediaType": "text/plain"},
        ]},
    ]  # fmt: skip
    body = {"id": "chat-2", "messages": history, "trigger": "submit-message", "messageId": None}
    response = await client.post("/ai-sdk/chat", json=body, headers=auth(user))
    assert response.status_code == 200
    rows = await db.fetch(
        "SELECT role, content FROM messages WHERE thread_id = $1 ORDER BY seq",
        thread_id_for_chat(user, "chat-2"),
    )
    assert [r["content"] for r in rows if r["role"] == "user"] == ["first", "second"]
    assert len(rows) == 4


async def test_a_retried_post_replays_the_same_run(
    client: Client, auth: AuthHeaders, user: str, upstream: FakeOpenAI
) -> None:
    first = await client.post("/ai-sdk/chat", json=ui_body("chat-3", "hello"), headers=auth(user))
    second = await client.post("/ai-sdk/chat", json=ui_body("chat-3", "hello"), headers=auth(user))
    assert second.headers["x-run-id"] == first.headers["x-run-id"]
    assert parts(second.content) == parts(first.content)
    assert len(upstream.requests) == 1


async def test_regenerate_answers_the_last_message_again_and_keeps_the_old_reply(
    client: Client, auth: AuthHeaders, user: str, upstream: FakeOpenAI, db: asyncpg.Pool
) -> None:
    upstream.behaviour = Behaviour(reply="First answer.")
    first = await client.post("/ai-sdk/chat", json=ui_body("chat-r", "question"), headers=auth(user))
    upstream.behaviour = Behaviour(reply="Second answer.")
    body = ui_body("chat-r", "question", trigger="regenerate-message", messageId="assistant-1")
    again = await client.post("/ai-sdk/chat", json=body, headers=auth(user))
    assert again.status_code == 200, again.text
    assert again.headers["x-run-id"] != first.headers["x-run-id"]
    deltas = [p["delta"] for p in parts(again.content) if p != "[DONE]" and p["type"] == "text-delta"]
    assert "".join(deltas) == "Second answer."
    rows = await db.fetch(
        "SELECT content, superseded_at IS NOT NULL AS old FROM messages"
        " WHERE thread_id = $1 AND role = 'assistant' ORDER BY seq",
        thread_id_for_chat(user, "chat-r"),
    )
    assert [(r["content"], r["old"]) for r in rows] == [("First answer.", True), ("Second answer.", False)]


async def test_chat_ids_map_per_user_and_uuid_chat_ids_are_thread_ids(
    client: Client, auth: AuthHeaders, user: str, upstream: FakeOpenAI
) -> None:
    assert thread_id_for_chat(user, "same") == thread_id_for_chat(user, "same")
    assert thread_id_for_chat(user, "same") != thread_id_for_chat("someone-else", "same")
    own = uuid.uuid4()
    response = await client.post("/ai-sdk/chat", json=ui_body(str(own), "hi"), headers=auth(user))
    assert response.headers["x-thread-id"] == str(own)
    # Another user's thread id is not found, exactly like an id that does not exist.
    stranger = await client.post("/ai-sdk/chat", json=ui_body(str(own), "mine?"), headers=auth("intruder"))
    assert stranger.status_code == 404
    assert stranger.headers["content-type"].startswith("application/problem+json")


async def test_resume_answers_204_when_nothing_runs(client: Client, auth: AuthHeaders, user: str) -> None:
    assert (await client.get("/ai-sdk/chat/never-used/stream", headers=auth(user))).status_code == 204
    await client.post("/ai-sdk/chat", json=ui_body("chat-4", "hi"), headers=auth(user))
    assert (await client.get("/ai-sdk/chat/chat-4/stream", headers=auth(user))).status_code == 204


async def test_a_failed_run_ends_with_error_then_finish(
    client: Client, auth: AuthHeaders, user: str, upstream: FakeOpenAI
) -> None:
    upstream.behaviour = Behaviour(fail_status=400, fail_times=1)
    response = await client.post("/ai-sdk/chat", json=ui_body("chat-5", "boom"), headers=auth(user))
    found = parts(response.content)
    types = [p if p == "[DONE]" else p["type"] for p in found]
    assert types == ["start", "error", "finish", "[DONE]"]
    assert found[1]["errorText"]
    assert found[2]["finishReason"] == "error"
    assert found[2]["messageMetadata"]["status"] == "failed"


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"messages": []}, 400),
        (ui_body("c", "hi", unknown="field"), 400),
        (ui_body("c", "   "), 422),
        (ui_body("c", "hi\x00"), 422),
        ({**ui_body("c", "x"), "messages": [{"id": "a", "role": "assistant", "parts": []}]}, 422),
        ({**ui_body("c", "x"), "messages": [{"id": "a", "role": "user", "parts": [{"type": "text"}]}]}, 422),
        (ui_body("x" * 201, "hi"), 400),
    ],
)
async def test_bad_requests_are_4xx_and_call_no_model(
    client: Client, auth: AuthHeaders, user: str, upstream: FakeOpenAI, body: dict[str, Any], status: int
) -> None:
    response = await client.post("/ai-sdk/chat", json=body, headers=auth(user))
    assert response.status_code == status, response.text
    assert upstream.requests == []


async def test_the_routes_need_a_token(client: Client) -> None:
    assert (await client.post("/ai-sdk/chat", json=ui_body("c", "hi"))).status_code == 401
    assert (await client.get("/ai-sdk/chat/c/stream")).status_code == 401
