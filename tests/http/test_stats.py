"""`/stats` for the caller, `/admin/stats` with filters, and an admin's view of a user's threads."""

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

Client = AsyncTestClient[Litestar]


async def stats(
    client: Client, headers: dict[str, str], path: str = "/stats", **params: Any
) -> dict[str, Any]:
    response = await client.get(path, params=params, headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_a_new_user_has_empty_stats(client: Client, auth: AuthHeaders, user: str) -> None:
    body = await stats(client, auth(user))
    assert body["scope"] == {"user_id": user, "agent": None, "from": None, "to": None}
    assert body["total_threads"] == 0
    statuses = ["active", "closed", "resolved", "archived", "abandoned"]
    assert body["threads_by_status"] == dict.fromkeys(statuses, 0)
    assert body["total_runs"] == 0
    assert body["success_rate"] is None
    assert body["time_to_first_token"] == {"mean_ms": None, "p95_ms": None}
    assert body["tokens"]["total_tokens"] == 0


async def test_stats_count_threads_runs_timings_and_tokens(
    client: Client, auth: AuthHeaders, user: str, upstream: FakeOpenAI, db: asyncpg.Pool
) -> None:
    upstream.behaviour = Behaviour(reply="fine")
    first = await new_thread(client, auth(user))
    await chat(client, auth(user), first["id"], "one")
    await chat(client, auth(user), first["id"], "two")
    second = await new_thread(client, auth(user))
    await client.patch(f"/threads/{second['id']}", json={"status": "resolved"}, headers=auth(user))
    upstream.behaviour = Behaviour(fail_status=500)
    await client.post("/chat", json={"message": "boom", "thread_id": first["id"]}, headers=auth(user))
    body = await stats(client, auth(user))
    assert body["total_threads"] == 2
    assert (body["threads_by_status"]["active"], body["threads_by_status"]["resolved"]) == (1, 1)
    assert body["total_runs"] == 3
    assert (body["runs_by_status"]["completed"], body["runs_by_status"]["failed"]) == (2, 1)
    assert body["success_rate"] == pytest.approx(2 / 3, abs=1e-4)
    rows = await db.fetch(
        "SELECT ttft_ms FROM usage_events WHERE user_id = $1 AND status = 'completed'", user
    )
    assert body["time_to_first_token"]["mean_ms"] == pytest.approx(
        sum(r["ttft_ms"] for r in rows) / 2, abs=0.1
    )
    assert body["latency"]["p95_ms"] >= body["latency"]["mean_ms"] >= 0
    everything = await db.fetchval("SELECT sum(total_tokens) FROM usage_events WHERE user_id = $1", user)
    assert body["tokens"]["total_tokens"] == everything
    assert body["tokens"]["prompt_tokens"] + body["tokens"]["completion_tokens"] == everything


async def test_stats_filter_by_time_and_agent(client: Client, auth: AuthHeaders, user: str) -> None:
    thread = await new_thread(client, auth(user))
    await chat(client, auth(user), thread["id"], "hello")
    future = await stats(client, auth(user), **{"from": "2999-01-01T00:00:00Z"})
    assert (future["total_threads"], future["total_runs"]) == (0, 0)
    past = await stats(client, auth(user), to="2000-01-01T00:00:00Z")
    assert past["total_runs"] == 0
    window = await stats(client, auth(user), **{"from": "2000-01-01T00:00:00Z", "to": "2999-01-01T00:00:00Z"})
    assert (window["total_threads"], window["total_runs"]) == (1, 1)
    assert (await stats(client, auth(user), agent="default"))["total_runs"] == 1
    assert (await stats(client, auth(user), agent="someone-else"))["total_runs"] == 0
    reversed_range = {"from": "2030-01-01T00:00:00Z", "to": "2020-01-01T00:00:00Z"}
    backwards = await client.get("/stats", params=reversed_range, headers=auth(user))
    assert backwards.status_code == 422
    assert (await client.get("/stats", params={"from": "soon"}, headers=auth(user))).status_code == 400


async def test_stats_are_the_callers_own(client: Client, auth: AuthHeaders, user: str) -> None:
    other = f"other-{uuid.uuid4().hex[:8]}"
    await chat(client, auth(other), (await new_thread(client, auth(other)))["id"], "not yours")
    assert (await stats(client, auth(user)))["total_runs"] == 0


async def test_admin_stats_filter_by_user_and_need_the_admin_role(
    client: Client, auth: AuthHeaders, user: str
) -> None:
    await chat(client, auth(user), (await new_thread(client, auth(user)))["id"], "hi")
    assert (await client.get("/admin/stats", headers=auth(user))).status_code == 403
    admin = auth("ops", admin=True)
    mine = await stats(client, admin, "/admin/stats", user_id=user)
    assert mine["scope"]["user_id"] == user
    assert (mine["total_threads"], mine["total_runs"]) == (1, 1)
    everyone = await stats(client, admin, "/admin/stats")
    assert everyone["scope"]["user_id"] is None
    assert everyone["total_runs"] >= 1
    assert everyone["total_threads"] >= mine["total_threads"]


async def test_deleted_threads_runs_still_count(client: Client, auth: AuthHeaders, user: str) -> None:
    thread = await new_thread(client, auth(user))
    await chat(client, auth(user), thread["id"], "soon gone")
    await client.delete(f"/threads/{thread['id']}", headers=auth(user))
    body = await stats(client, auth(user))
    assert (body["total_threads"], body["total_runs"], body["runs_by_status"]["completed"]) == (0, 1, 1)


async def test_admin_lists_a_users_threads_with_filters(client: Client, auth: AuthHeaders, user: str) -> None:
    first = await new_thread(client, auth(user), title="alpha")
    await new_thread(client, auth(user), title="beta")
    path = f"/admin/users/{user}/threads"
    assert (await client.get(path, headers=auth(user))).status_code == 403
    admin = auth("ops", admin=True)
    listed = (await client.get(path, headers=admin)).json()
    assert listed["pagination"]["total_items"] == 2
    assert {t["title"] for t in listed["threads"]} == {"alpha", "beta"}
    searched = (await client.get(path, params={"search": "alp"}, headers=admin)).json()
    assert [t["id"] for t in searched["threads"]] == [first["id"]]
    nobody = (await client.get("/admin/users/nobody-at-all/threads", headers=admin)).json()
    assert nobody["threads"] == []
    assert (await client.get(path, params={"per_page": 51}, headers=admin)).status_code == 400
