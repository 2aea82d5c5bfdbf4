"""Thread statuses over HTTP: transitions, messages to non-active threads, the abandon job, cleanup."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.conftest import AuthHeaders
from tests.support.sessions import eventually, in_app, new_thread, sessions_of
from threadline.domain.lifecycle import can_transition
from threadline.domain.models import ThreadStatus
from threadline.jobs import ABANDON_JOB

Client = AsyncTestClient[Litestar]
STATUSES = [status.value for status in ThreadStatus]


async def thread_in(client: Client, headers: dict[str, str], db: asyncpg.Pool, status: str) -> str:
    thread = await new_thread(client, headers)
    await db.execute("UPDATE threads SET status = $2 WHERE id = $1", uuid.UUID(thread["id"]), status)
    thread_id: str = thread["id"]
    return thread_id


@pytest.mark.parametrize("current", STATUSES)
@pytest.mark.parametrize("target", STATUSES)
async def test_patch_status_follows_the_transition_table(
    client: Client, auth: AuthHeaders, user: str, db: asyncpg.Pool, current: str, target: str
) -> None:
    thread_id = await thread_in(client, auth(user), db, current)
    response = await client.patch(f"/threads/{thread_id}", json={"status": target}, headers=auth(user))
    stored = await db.fetchval("SELECT status FROM threads WHERE id = $1", uuid.UUID(thread_id))
    if can_transition(ThreadStatus(current), ThreadStatus(target)):
        assert response.status_code == 200, response.text
        assert response.json()["status"] == target
        assert stored == target
    else:
        assert response.status_code == 409, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["code"] == "invalid_transition"
        assert stored == current


async def test_reopening_counts_as_activity(
    client: Client, auth: AuthHeaders, user: str, db: asyncpg.Pool
) -> None:
    thread_id = await thread_in(client, auth(user), db, "closed")
    await db.execute(
        "UPDATE threads SET last_activity_at = now() - interval '3 days' WHERE id = $1", uuid.UUID(thread_id)
    )
    reopened = (
        await client.patch(f"/threads/{thread_id}", json={"status": "active"}, headers=auth(user))
    ).json()
    assert reopened["status"] == "active"
    assert await db.fetchval(
        "SELECT last_activity_at > now() - interval '1 minute' FROM threads WHERE id = $1",
        uuid.UUID(thread_id),
    )


@pytest.mark.parametrize("status", ["closed", "resolved", "archived"])
async def test_a_message_to_an_ended_thread_is_409_and_changes_nothing(
    client: Client, auth: AuthHeaders, user: str, db: asyncpg.Pool, status: str
) -> None:
    thread_id = await thread_in(client, auth(user), db, status)
    for route in ("/chat", "/chat/stream"):
        response = await client.post(
            route, json={"message": "hi", "thread_id": thread_id}, headers=auth(user)
        )
        assert response.status_code == 409, response.text
        assert response.json()["code"] == "thread_not_writable"
    regenerate = await client.post(f"/threads/{thread_id}/regenerate", headers=auth(user))
    assert regenerate.status_code == 409
    assert await db.fetchval("SELECT count(*) FROM messages WHERE thread_id = $1", uuid.UUID(thread_id)) == 0
    assert await db.fetchval("SELECT status FROM threads WHERE id = $1", uuid.UUID(thread_id)) == status


async def test_a_message_to_an_abandoned_thread_reopens_it(
    client: Client, auth: AuthHeaders, user: str, db: asyncpg.Pool
) -> None:
    thread_id = await thread_in(client, auth(user), db, "abandoned")
    response = await client.post(
        "/chat", json={"message": "back again", "thread_id": thread_id}, headers=auth(user)
    )
    assert response.status_code == 200, response.text
    assert await db.fetchval("SELECT status FROM threads WHERE id = $1", uuid.UUID(thread_id)) == "active"


async def test_without_a_thread_a_message_skips_ended_threads_and_starts_a_new_one(
    client: Client, auth: AuthHeaders, user: str, db: asyncpg.Pool
) -> None:
    closed = await thread_in(client, auth(user), db, "closed")
    reply = (await client.post("/chat", json={"message": "new topic"}, headers=auth(user))).json()
    assert reply["thread_id"] != closed
    again = (await client.post("/chat", json={"message": "same topic"}, headers=auth(user))).json()
    assert again["thread_id"] == reply["thread_id"]


async def idle(db: asyncpg.Pool, thread_id: str, minutes: int) -> None:
    await db.execute(
        "UPDATE threads SET last_activity_at = now() - make_interval(mins => $2) WHERE id = $1",
        uuid.UUID(thread_id),
        minutes,
    )


async def test_the_abandon_job_abandons_only_idle_active_threads(
    client: Client, auth: AuthHeaders, user: str, db: asyncpg.Pool
) -> None:
    stale, fresh = await new_thread(client, auth(user)), await new_thread(client, auth(user))
    stale_closed = await thread_in(client, auth(user), db, "closed")
    await idle(db, stale["id"], 31)
    await idle(db, stale_closed, 600)
    await in_app(client, sessions_of(client).jobs.run, ABANDON_JOB, {})
    statuses = {
        row["id"]: row["status"]
        for row in await db.fetch("SELECT id::text, status FROM threads WHERE user_id = $1", user)
    }
    assert statuses == {stale["id"]: "abandoned", fresh["id"]: "active", stale_closed: "closed"}


async def test_the_abandon_job_runs_from_the_queue(
    client: Client, auth: AuthHeaders, user: str, db: asyncpg.Pool
) -> None:
    thread = await new_thread(client, auth(user))
    await idle(db, thread["id"], 45)
    await in_app(client, sessions_of(client).jobs.enqueue, ABANDON_JOB, {})

    async def abandoned() -> bool:
        status = await db.fetchval("SELECT status FROM threads WHERE id = $1", uuid.UUID(thread["id"]))
        return bool(status == "abandoned")

    await eventually(abandoned)


async def test_a_thread_with_a_live_run_is_not_idle(
    client: Client, auth: AuthHeaders, user: str, db: asyncpg.Pool
) -> None:
    thread = await new_thread(client, auth(user))
    await client.post("/chat", json={"message": "hi", "thread_id": thread["id"]}, headers=auth(user))
    await db.execute("UPDATE runs SET status = 'running' WHERE thread_id = $1", uuid.UUID(thread["id"]))
    await idle(db, thread["id"], 90)
    try:
        abandon = sessions_of(client).housekeeping.abandon_idle
        assert uuid.UUID(thread["id"]) not in await in_app(client, lambda: abandon(30, user_id=user))
    finally:
        await db.execute("UPDATE runs SET status = 'completed' WHERE thread_id = $1", uuid.UUID(thread["id"]))


async def test_admin_cleanup_abandons_on_demand(
    client: Client, auth: AuthHeaders, user: str, db: asyncpg.Pool
) -> None:
    thread = await new_thread(client, auth(user))
    await idle(db, thread["id"], 20)
    body: dict[str, Any] = {"max_idle_minutes": 10}
    denied = await client.post("/admin/threads/cleanup", json=body, headers=auth(user))
    assert denied.status_code == 403
    response = await client.post("/admin/threads/cleanup", json=body, headers=auth("ops", admin=True))
    assert response.status_code == 200, response.text
    assert response.json()["max_idle_minutes"] == 10
    assert thread["id"] in response.json()["thread_ids"]
    assert response.json()["abandoned"] >= 1
    assert (
        await db.fetchval("SELECT status FROM threads WHERE id = $1", uuid.UUID(thread["id"])) == "abandoned"
    )
    default = await client.post("/admin/threads/cleanup", headers=auth("ops", admin=True))
    assert default.json()["max_idle_minutes"] == 30
    bad = await client.post(
        "/admin/threads/cleanup", json={"max_idle_minutes": 0}, headers=auth("ops", admin=True)
    )
    assert bad.status_code == 400
