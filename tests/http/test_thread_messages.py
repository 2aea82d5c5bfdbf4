"""A thread's messages page by page, regenerate and edit-then-regenerate, and the export."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.conftest import AuthHeaders
from tests.support.fake_openai import Behaviour, FakeOpenAI
from tests.support.sessions import chat, new_thread
from tests.support.sse import parse_sse, reply_text

Client = AsyncTestClient[Litestar]


async def messages(client: Client, headers: dict[str, str], thread_id: str, **params: Any) -> dict[str, Any]:
    response = await client.get(f"/threads/{thread_id}/messages", params=params, headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_messages_come_in_seq_order_in_pages_with_thread_info(
    client: Client, auth: AuthHeaders, user: str
) -> None:
    thread = await new_thread(client, auth(user), title="Paged")
    for n in range(3):
        await chat(client, auth(user), thread["id"], f"question {n}")
    page = await messages(client, auth(user), thread["id"], per_page=4)
    assert page["thread_info"]["id"] == thread["id"]
    assert page["thread_info"]["title"] == "Paged"
    assert [m["seq"] for m in page["messages"]] == [1, 2, 3, 4]
    assert [m["role"] for m in page["messages"]] == ["user", "assistant", "user", "assistant"]
    assert page["pagination"] == {
        "page": 1, "per_page": 4, "total_items": 6, "total_pages": 2, "has_next": True, "has_prev": False,
    }  # fmt: skip
    first = page["messages"][0]
    assert first["content"] == "question 0"
    assert first["status"] is None
    assert first["metadata"]["client"]["user_agent"]
    assert first["superseded_at"] is None
    reply = page["messages"][1]
    assert reply["status"] == "completed"
    assert reply["run_id"] is not None
    assert reply["completed_at"] is not None
    last = await messages(client, auth(user), thread["id"], per_page=4, page=2)
    assert [m["seq"] for m in last["messages"]] == [5, 6]
    assert (last["pagination"]["has_next"], last["pagination"]["has_prev"]) == (False, True)
    beyond = await messages(client, auth(user), thread["id"], page=5)
    assert beyond["messages"] == []


async def test_an_empty_thread_has_an_empty_first_page(client: Client, auth: AuthHeaders, user: str) -> None:
    thread = await new_thread(client, auth(user))
    page = await messages(client, auth(user), thread["id"])
    assert page["messages"] == []
    assert page["pagination"]["total_pages"] == 0


@pytest.mark.parametrize("params", [{"per_page": 101}, {"per_page": 0}, {"page": 0}, {"page": "x"}])
async def test_bad_message_page_parameters_are_400(
    client: Client, auth: AuthHeaders, user: str, params: dict[str, Any]
) -> None:
    thread = await new_thread(client, auth(user))
    response = await client.get(f"/threads/{thread['id']}/messages", params=params, headers=auth(user))
    assert response.status_code == 400


async def test_regenerate_streams_a_new_reply_and_keeps_the_old_one_as_a_version(
    client: Client, auth: AuthHeaders, user: str, upstream: FakeOpenAI, db: asyncpg.Pool
) -> None:
    upstream.behaviour = Behaviour(reply="First answer.")
    thread = await new_thread(client, auth(user))
    first = await chat(client, auth(user), thread["id"], "Tell me a fact.")
    upstream.behaviour = Behaviour(reply="Second answer.")
    response = await client.post(f"/threads/{thread['id']}/regenerate", headers=auth(user))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    events = parse_sse(response.content)
    assert events[0].type == "start"
    assert events[-1].type == "done"
    assert reply_text(events) == "Second answer."
    assert response.headers["location"] == f"/runs/{events[0].data['run_id']}/stream"
    # The model saw the question once, and not the superseded reply.
    sent = upstream.requests[-1]["messages"]
    assert [(m["role"], m["content"]) for m in sent[1:]] == [("user", "Tell me a fact.")]
    current = await messages(client, auth(user), thread["id"])
    assert [(m["role"], m["content"]) for m in current["messages"]] == [
        ("user", "Tell me a fact."),
        ("assistant", "Second answer."),
    ]
    assert current["messages"][1]["metadata"]["replaces"] == first["message_id"]
    every = await messages(client, auth(user), thread["id"], include_superseded="true")
    assert [(m["seq"], m["content"], m["superseded_at"] is not None) for m in every["messages"]] == [
        (1, "Tell me a fact.", False),
        (2, "First answer.", True),
        (3, "Second answer.", False),
    ]
    runs = await db.fetch(
        "SELECT user_message_id FROM runs WHERE thread_id = $1 ORDER BY created_at", uuid.UUID(thread["id"])
    )
    assert len({row["user_message_id"] for row in runs}) == 1
    detail = (await client.get(f"/threads/{thread['id']}", headers=auth(user))).json()
    assert detail["total_messages"] == 2
    assert detail["usage"]["runs"] == 2


async def test_edit_then_regenerate_replaces_the_question_and_keeps_both_versions(
    client: Client, auth: AuthHeaders, user: str, upstream: FakeOpenAI
) -> None:
    thread = await new_thread(client, auth(user))
    await chat(client, auth(user), thread["id"], "Capital of Frnace?")
    original = await messages(client, auth(user), thread["id"])
    response = await client.post(
        f"/threads/{thread['id']}/regenerate", json={"message": "Capital of France?"}, headers=auth(user)
    )
    assert response.status_code == 200, response.text
    assert reply_text(parse_sse(response.content)) == "Echo: Capital of France?"
    assert upstream.requests[-1]["messages"][-1] == {"role": "user", "content": "Capital of France?"}
    current = await messages(client, auth(user), thread["id"])
    assert [(m["seq"], m["role"], m["content"]) for m in current["messages"]] == [
        (3, "user", "Capital of France?"),
        (4, "assistant", "Echo: Capital of France?"),
    ]
    assert current["messages"][0]["metadata"]["edited_from"] == original["messages"][0]["id"]
    every = await messages(client, auth(user), thread["id"], include_superseded="true")
    assert [m["content"] for m in every["messages"] if m["superseded_at"]] == [
        "Capital of Frnace?",
        "Echo: Capital of Frnace?",
    ]


async def test_regenerate_after_a_cut_reply_and_twice_in_a_row(
    client: Client, auth: AuthHeaders, user: str, upstream: FakeOpenAI
) -> None:
    upstream.behaviour = Behaviour(fail_status=500)
    thread = await new_thread(client, auth(user))
    await client.post("/chat", json={"message": "try", "thread_id": thread["id"]}, headers=auth(user))
    upstream.behaviour = Behaviour(reply="ok")
    for _ in range(2):
        response = await client.post(f"/threads/{thread['id']}/regenerate", headers=auth(user))
        assert parse_sse(response.content)[-1].data["status"] == "completed"
    every = await messages(client, auth(user), thread["id"], include_superseded="true")
    assert [(m["role"], m["status"], m["superseded_at"] is None) for m in every["messages"]] == [
        ("user", None, True),
        ("assistant", "failed", False),
        ("assistant", "completed", False),
        ("assistant", "completed", True),
    ]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"message": ""}, 422, "invalid_input"),
        ({"message": "x" * 32_001}, 422, "message_too_long"),
        ({"message": "a\u0000b"}, 422, "invalid_input"),
        ({"content": "hi"}, 400, None),
    ],
)
async def test_bad_regenerate_bodies_cost_no_model_call(
    client: Client, auth: AuthHeaders, user: str, upstream: FakeOpenAI, body: dict[str, Any], status: int,
    code: str | None,
) -> None:  # fmt: skip
    thread = await new_thread(client, auth(user))
    await chat(client, auth(user), thread["id"], "hello")
    calls = len(upstream.requests)
    response = await client.post(f"/threads/{thread['id']}/regenerate", json=body, headers=auth(user))
    assert response.status_code == status, response.text
    if code:
        assert response.json()["code"] == code
    assert len(upstream.requests) == calls


async def test_regenerate_with_nothing_to_answer_is_409(client: Client, auth: AuthHeaders, user: str) -> None:
    thread = await new_thread(client, auth(user))
    response = await client.post(f"/threads/{thread['id']}/regenerate", headers=auth(user))
    assert response.status_code == 409
    assert response.json()["code"] == "nothing_to_regenerate"


async def test_regenerate_while_a_run_is_live_is_409(
    client: Client, auth: AuthHeaders, user: str, db: asyncpg.Pool
) -> None:
    thread = await new_thread(client, auth(user))
    reply = await chat(client, auth(user), thread["id"], "hello")
    await db.execute("UPDATE runs SET status = 'running' WHERE id = $1", uuid.UUID(reply["run_id"]))
    try:
        response = await client.post(f"/threads/{thread['id']}/regenerate", headers=auth(user))
        assert response.status_code == 409
        assert response.json()["code"] == "run_in_progress"
    finally:
        await db.execute("UPDATE runs SET status = 'completed' WHERE id = $1", uuid.UUID(reply["run_id"]))


async def test_export_as_json_and_markdown(
    client: Client, auth: AuthHeaders, user: str, upstream: FakeOpenAI
) -> None:
    upstream.behaviour = Behaviour(reply="Lisbon is lovely in May.")
    thread = await new_thread(client, auth(user), title="Trip")
    await chat(client, auth(user), thread["id"], "When should I visit Lisbon?")
    as_json = await client.get(f"/threads/{thread['id']}/export", headers=auth(user))
    assert as_json.status_code == 200
    assert as_json.headers["content-type"].startswith("application/json")
    assert as_json.headers["content-disposition"] == f'attachment; filename="thread-{thread["id"]}.json"'
    document = as_json.json()
    assert document["format"] == "threadline.thread.v1"
    assert document["thread"]["title"] == "Trip"
    assert [(m["role"], m["content"]) for m in document["messages"]] == [
        ("user", "When should I visit Lisbon?"),
        ("assistant", "Lisbon is lovely in May."),
    ]
    as_markdown = await client.get(f"/threads/{thread['id']}/export", params={"format": "markdown"},
                                   headers=auth(user))  # fmt: skip
    assert as_markdown.headers["content-type"].startswith("text/markdown")
    text = as_markdown.text
    assert text.startswith("# Trip\n")
    assert f"- Thread: `{thread['id']}`" in text
    assert "## User · " in text
    assert "When should I visit Lisbon?" in text
    assert "## Assistant · " in text
    assert text.index("When should I visit Lisbon?") < text.index("Lisbon is lovely in May.")
    bad = await client.get(f"/threads/{thread['id']}/export", params={"format": "pdf"}, headers=auth(user))
    assert bad.status_code == 400
