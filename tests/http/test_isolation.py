"""The isolation matrix: every route that takes an id, every method, called by another user, answers
404 exactly as for an id that does not exist, and changes nothing."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.conftest import AuthHeaders
from tests.support.fake_openai import FakeOpenAI
from tests.support.sessions import chat, new_thread

Client = AsyncTestClient[Litestar]
T, R = "{thread}", "{run}"
# (method, path, query, JSON body); {thread} and {run} are the owner's ids.
CASES: list[tuple[str, str, dict[str, str], dict[str, Any] | None]] = [
    ("GET", f"/threads/{T}", {}, None),
    ("PATCH", f"/threads/{T}", {}, {"title": "mine now", "status": "archived", "metadata": {"x": 1}}),
    ("DELETE", f"/threads/{T}", {}, None),
    ("GET", f"/threads/{T}/messages", {}, None),
    ("GET", f"/threads/{T}/messages", {"include_superseded": "true"}, None),
    ("POST", f"/threads/{T}/regenerate", {}, None),
    ("POST", f"/threads/{T}/regenerate", {}, {"message": "edited by someone else"}),
    ("GET", f"/threads/{T}/export", {"format": "json"}, None),
    ("GET", f"/threads/{T}/export", {"format": "markdown"}, None),
    ("POST", "/chat", {}, {"message": "hello", "thread_id": T}),
    ("POST", "/chat/stream", {}, {"message": "hello", "thread_id": T}),
    ("GET", "/chat/history", {"thread_id": T}, None),
    ("DELETE", "/chat/history", {"thread_id": T}, None),
    ("GET", f"/runs/{R}", {}, None),
    ("GET", f"/runs/{R}/stream", {}, None),
    ("POST", f"/runs/{R}/cancel", {}, None),
]
SNAPSHOT = {
    "threads": "SELECT * FROM threads WHERE id = $1",
    "messages": "SELECT * FROM messages WHERE thread_id = $1 ORDER BY seq",
    "runs": "SELECT * FROM runs WHERE thread_id = $1 ORDER BY created_at",
    "usage": "SELECT * FROM usage_events WHERE thread_id = $1 ORDER BY id",
}


async def snapshot(db: asyncpg.Pool, thread_id: uuid.UUID) -> dict[str, list[dict[str, Any]]]:
    return {name: [dict(row) for row in await db.fetch(sql, thread_id)] for name, sql in SNAPSHOT.items()}


def fill(value: Any, ids: dict[str, str]) -> Any:
    if isinstance(value, str):
        return value.format(**ids)
    if isinstance(value, dict):
        return {key: fill(item, ids) for key, item in value.items()}
    return value


async def call(
    client: Client, headers: dict[str, str], case: tuple[str, str, dict[str, str], dict[str, Any] | None],
    ids: dict[str, str],
) -> Any:  # fmt: skip
    method, path, query, body = case
    return await client.request(
        method, fill(path, ids), params=fill(query, ids), json=fill(body, ids), headers=headers
    )


@pytest.mark.parametrize(
    "case", CASES, ids=[f"{c[0]} {c[1]} {c[2] or ''}{'+body' if c[3] else ''}" for c in CASES]
)
async def test_another_users_ids_are_404_like_missing_ones_and_change_nothing(
    client: Client, auth: AuthHeaders, user: str, upstream: FakeOpenAI, db: asyncpg.Pool,
    case: tuple[str, str, dict[str, str], dict[str, Any] | None],
) -> None:  # fmt: skip
    thread = await new_thread(client, auth(user), title="private")
    reply = await chat(client, auth(user), thread["id"], "my secret")
    thread_id = uuid.UUID(thread["id"])
    before = await snapshot(db, thread_id)
    calls = len(upstream.requests)
    intruder = auth(f"intruder-{uuid.uuid4().hex[:8]}")

    taken = await call(client, intruder, case, {"thread": thread["id"], "run": reply["run_id"]})
    missing = await call(client, intruder, case, {"thread": str(uuid.uuid4()), "run": str(uuid.uuid4())})

    assert taken.status_code == 404, taken.text
    assert taken.headers["content-type"].startswith("application/problem+json")
    assert missing.status_code == 404
    assert taken.json() == missing.json()
    assert "my secret" not in taken.text
    assert await snapshot(db, thread_id) == before
    assert len(upstream.requests) == calls
