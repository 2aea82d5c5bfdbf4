"""`/threads`: create, list with filters and pages, the active thread, read, change, delete."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.conftest import AuthHeaders
from tests.support.fake_openai import Behaviour, FakeOpenAI
from tests.support.memory import embedded
from tests.support.sessions import chat, new_thread

Client = AsyncTestClient[Litestar]


async def test_a_new_thread_is_active_bound_to_the_default_agent(
    client: Client, auth: AuthHeaders, user: str
) -> None:
    thread = await new_thread(client, auth(user), title="Trip plans", metadata={"topic": "travel"})
    assert thread["status"] == "active"
    assert thread["agent"] == "default"
    assert thread["title"] == "Trip plans"
    assert thread["message_count"] == 0
    assert thread["metadata"]["topic"] == "travel"
    assert "client" in thread["metadata"]
    untitled = await new_thread(client, auth(user))
    assert untitled["title"] is None


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"agent": "no-such-agent"}, 422),
        ({"agent": "../etc"}, 400),
        ({"title": ""}, 400),
        ({"title": "   "}, 422),
        ({"title": "x" * 201}, 400),
        ({"title": "a\u0000b"}, 422),
        ({"metadata": {"client": {"ip": "1.2.3.4"}}}, 422),
        ({"metadata": {"k": "a\u0000b"}}, 422),
        ({"metadata": {"big": "x" * 20_000}}, 422),
        ({"unknown": 1}, 400),
    ],
)
async def test_bad_thread_bodies_are_4xx_problems(
    client: Client, auth: AuthHeaders, user: str, body: dict[str, Any], status: int
) -> None:
    response = await client.post("/threads", json=body, headers=auth(user))
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_list_pages_newest_activity_first_with_the_pagination_envelope(
    client: Client, auth: AuthHeaders, user: str
) -> None:
    created = [await new_thread(client, auth(user), title=f"t{i}") for i in range(5)]
    first = (await client.get("/threads", params={"per_page": 2}, headers=auth(user))).json()
    assert [t["id"] for t in first["threads"]] == [created[4]["id"], created[3]["id"]]
    assert first["pagination"] == {
        "page": 1, "per_page": 2, "total_items": 5, "total_pages": 3, "has_next": True, "has_prev": False,
    }  # fmt: skip
    last = (await client.get("/threads", params={"per_page": 2, "page": 3}, headers=auth(user))).json()
    assert [t["id"] for t in last["threads"]] == [created[0]["id"]]
    assert (last["pagination"]["has_next"], last["pagination"]["has_prev"]) == (False, True)
    beyond = (await client.get("/threads", params={"per_page": 2, "page": 9}, headers=auth(user))).json()
    assert beyond["threads"] == []
    assert beyond["pagination"]["total_items"] == 5


async def test_an_empty_list(client: Client, auth: AuthHeaders, user: str) -> None:
    body = (await client.get("/threads", headers=auth(user))).json()
    assert body["threads"] == []
    assert body["pagination"] == {
        "page": 1, "per_page": 20, "total_items": 0, "total_pages": 0, "has_next": False, "has_prev": False,
    }  # fmt: skip


@pytest.mark.parametrize(
    "params",
    [
        {"per_page": 51},
        {"per_page": 0},
        {"page": 0},
        {"status": "deleted"},
        {"min_messages": -1},
        {"created_from": "yesterday"},
        {"search": ""},
    ],
)
async def test_bad_list_parameters_are_400(
    client: Client, auth: AuthHeaders, user: str, params: dict[str, Any]
) -> None:
    response = await client.get("/threads", params=params, headers=auth(user))
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_a_nul_in_a_filter_is_422(client: Client, auth: AuthHeaders, user: str) -> None:
    response = await client.get("/threads", params={"search": "a\x00b"}, headers=auth(user))
    assert response.status_code == 422


async def test_filters_by_status_agent_messages_and_creation_time(
    client: Client, auth: AuthHeaders, user: str, db: asyncpg.Pool
) -> None:
    headers = auth(user)
    talked = await new_thread(client, headers, title="talked")
    await chat(client, headers, talked["id"], "hello there")
    closed = await new_thread(client, headers, title="closed")
    await client.patch(f"/threads/{closed['id']}", json={"status": "closed"}, headers=headers)
    old = await new_thread(client, headers, title="old")
    await db.execute(
        "UPDATE threads SET created_at = '2020-01-01T00:00:00Z' WHERE id = $1", uuid.UUID(old["id"])
    )

    async def ids(**params: Any) -> set[str]:
        response = await client.get("/threads", params=params, headers=headers)
        assert response.status_code == 200, response.text
        return {t["id"] for t in response.json()["threads"]}

    assert await ids(status="closed") == {closed["id"]}
    assert await ids(status="active") == {talked["id"], old["id"]}
    assert await ids(agent="default") == {talked["id"], closed["id"], old["id"]}
    assert await ids(agent="nobody") == set()
    assert await ids(min_messages=1) == {talked["id"]}
    assert await ids(created_to="2021-01-01T00:00:00Z") == {old["id"]}
    assert await ids(created_from="2021-01-01T00:00:00Z") == {talked["id"], closed["id"]}


@pytest.mark.parametrize(
    ("search", "expected"),
    [
        ("100%", {"percent"}),
        ("under_score", {"underscore"}),
        ("C:\\path", {"backslash"}),
        ("_", {"underscore"}),
        ("%", {"percent"}),
        ("'; DROP TABLE threads; --", set()),
        ("ümlaut", {"unicode"}),
        ("TITLE-ONLY", {"title"}),
        ("(", set()),
    ],
)
async def test_search_matches_titles_and_message_text_literally(
    client: Client, auth: AuthHeaders, user: str, search: str, expected: set[str]
) -> None:
    headers = auth(user)
    names: dict[str, str] = {}
    for name, message in [
        ("percent", "a 100% sure thing"),
        ("underscore", "my under_score name"),
        ("backslash", "look in C:\\path\\file"),
        ("unicode", "Ümlaut and ümlaut"),
    ]:
        thread = await new_thread(client, headers)
        await chat(client, headers, thread["id"], message)
        names[thread["id"]] = name
    names[(await new_thread(client, headers, title="Has a title-only match"))["id"]] = "title"
    response = await client.get("/threads", params={"search": search}, headers=headers)
    assert response.status_code == 200, response.text
    assert {names[t["id"]] for t in response.json()["threads"]} == expected


async def test_active_is_the_latest_active_thread_or_404(
    client: Client, auth: AuthHeaders, user: str
) -> None:
    missing = await client.get("/threads/active", headers=auth(user))
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("application/problem+json")
    first = await new_thread(client, auth(user))
    second = await new_thread(client, auth(user))
    assert (await client.get("/threads/active", headers=auth(user))).json()["id"] == second["id"]
    await client.patch(f"/threads/{second['id']}", json={"status": "archived"}, headers=auth(user))
    assert (await client.get("/threads/active", headers=auth(user))).json()["id"] == first["id"]


async def test_read_gives_totals_last_message_and_usage(
    client: Client, auth: AuthHeaders, user: str, upstream: FakeOpenAI
) -> None:
    upstream.behaviour = Behaviour(reply="Sure thing.")
    thread = await new_thread(client, auth(user))
    await chat(client, auth(user), thread["id"], "first")
    await chat(client, auth(user), thread["id"], "second")
    body = (await client.get(f"/threads/{thread['id']}", headers=auth(user))).json()
    assert body["total_messages"] == 4
    assert body["message_count"] == 4
    assert body["last_message"]["role"] == "assistant"
    assert body["last_message"]["content"] == "Sure thing."
    assert body["last_message"]["seq"] == 4
    assert body["last_activity"] == body["last_activity_at"]
    assert body["context_summary"] is None
    reported = upstream.reported_usage[-2:]
    assert body["usage"]["runs"] == 2
    assert body["usage"]["total_tokens"] == sum(u["total_tokens"] for u in reported)
    assert body["usage"]["prompt_tokens"] == sum(u["prompt_tokens"] for u in reported)


async def test_read_an_unknown_or_malformed_id(client: Client, auth: AuthHeaders, user: str) -> None:
    assert (await client.get(f"/threads/{uuid.uuid4()}", headers=auth(user))).status_code == 404
    assert (await client.get("/threads/not-a-uuid", headers=auth(user))).status_code == 404


async def test_patch_changes_title_and_merges_metadata(client: Client, auth: AuthHeaders, user: str) -> None:
    thread = await new_thread(client, auth(user), title="Old", metadata={"a": 1, "b": 2})
    url = f"/threads/{thread['id']}"
    changed = (await client.patch(url, json={"title": "  New   title ", "metadata": {"b": None, "c": 3}},
                                  headers=auth(user))).json()  # fmt: skip
    assert changed["title"] == "New title"
    assert changed["metadata"]["a"] == 1
    assert "b" not in changed["metadata"]
    assert changed["metadata"]["c"] == 3
    assert "client" in changed["metadata"]
    untouched = (await client.patch(url, json={}, headers=auth(user))).json()
    assert untouched["title"] == "New title"
    cleared = (await client.patch(url, json={"title": None}, headers=auth(user))).json()
    assert cleared["title"] is None


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"status": "deleted"}, 400),
        ({"title": 5}, 400),
        ({"metadata": {"client": {}}}, 422),
        ({"owner": "me"}, 400),
        ({"title": "\u0000"}, 422),
    ],
)
async def test_bad_patches(
    client: Client, auth: AuthHeaders, user: str, body: dict[str, Any], status: int
) -> None:
    thread = await new_thread(client, auth(user))
    response = await client.patch(f"/threads/{thread['id']}", json=body, headers=auth(user))
    assert response.status_code == status, response.text


async def test_delete_removes_messages_runs_and_embeddings_and_keeps_usage(
    client: Client, auth: AuthHeaders, user: str, db: asyncpg.Pool
) -> None:
    thread = await new_thread(client, auth(user))
    reply = await chat(client, auth(user), thread["id"], "remember me")
    thread_id = uuid.UUID(thread["id"])
    await embedded(db, user, 2)  # the background job's vectors for the question and the reply
    response = await client.delete(f"/threads/{thread['id']}", headers=auth(user))
    assert response.status_code == 204
    for table in ("messages", "runs", "message_embeddings"):
        assert await db.fetchval(f"SELECT count(*) FROM {table} WHERE thread_id = $1", thread_id) == 0
    usage = await db.fetch("SELECT thread_id FROM usage_events WHERE run_id = $1", uuid.UUID(reply["run_id"]))
    assert [row["thread_id"] for row in usage] == [None]
    assert (await client.get(f"/threads/{thread['id']}", headers=auth(user))).status_code == 404
    assert (await client.delete(f"/threads/{thread['id']}", headers=auth(user))).status_code == 404


async def test_patches_cannot_grow_metadata_without_bound(
    client: Client, auth: AuthHeaders, user: str
) -> None:
    thread = await new_thread(client, auth(user))
    url = f"/threads/{thread['id']}"
    for key in ("a", "b"):
        response = await client.patch(url, json={"metadata": {key: "x" * 10_000}}, headers=auth(user))
        assert response.status_code == (200 if key == "a" else 422), response.text
    assert set((await client.get(url, headers=auth(user))).json()["metadata"]) == {"a", "client"}
