"""`/agents`: admin CRUD, one default always, no deleting an agent in use, runs use their agent."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.conftest import AuthHeaders
from tests.support.fake_openai import FakeOpenAI
from tests.support.sessions import chat, new_thread

Client = AsyncTestClient[Litestar]


@pytest.fixture
def slug() -> str:
    return f"agent-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def admin(auth: AuthHeaders) -> dict[str, str]:
    return auth("admin-user", admin=True)


async def create(client: Client, admin: dict[str, str], slug: str, **fields: Any) -> dict[str, Any]:
    body = {"slug": slug, "name": "Pirate", "system_prompt": "You talk like a pirate.", **fields}
    response = await client.post("/agents", json=body, headers=admin)
    assert response.status_code == 201, response.text
    agent: dict[str, Any] = response.json()
    return agent


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/agents"), ("POST", "/agents"), ("GET", "/agents/default"), ("PATCH", "/agents/default"),
     ("DELETE", "/agents/default")],
)  # fmt: skip
async def test_agents_need_the_admin_role(
    client: Client, auth: AuthHeaders, user: str, method: str, path: str
) -> None:
    body = {"name": "x"} if method == "PATCH" else {"slug": "x", "name": "x", "system_prompt": "x"}
    response = await client.request(
        method, path, headers=auth(user), json=body if method in {"POST", "PATCH"} else None
    )
    assert response.status_code == 403
    assert response.headers["content-type"].startswith("application/problem+json")
    assert (await client.get("/agents")).status_code == 401


async def test_create_read_list_change_delete(client: Client, admin: dict[str, str], slug: str) -> None:
    created = await create(client, admin, slug, model="gpt-4o-mini", temperature=0.7, max_output_tokens=64)
    assert created["slug"] == slug
    assert created["temperature"] == 0.7
    assert created["is_default"] is False
    assert (await client.get(f"/agents/{slug}", headers=admin)).json() == created
    listed = (await client.get("/agents", headers=admin)).json()
    assert listed[0]["is_default"] is True
    assert slug in [agent["slug"] for agent in listed]
    changed = (await client.patch(f"/agents/{slug}", json={"name": "Captain", "temperature": None},
                                  headers=admin)).json()  # fmt: skip
    assert (changed["name"], changed["temperature"], changed["max_output_tokens"]) == ("Captain", None, 64)
    assert changed["system_prompt"] == created["system_prompt"]
    assert (await client.delete(f"/agents/{slug}", headers=admin)).status_code == 204
    assert (await client.get(f"/agents/{slug}", headers=admin)).status_code == 404
    assert (await client.delete(f"/agents/{slug}", headers=admin)).status_code == 404


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"slug": "Bad Slug", "name": "x", "system_prompt": "x"}, 400),
        ({"slug": "ok", "name": "", "system_prompt": "x"}, 400),
        ({"slug": "ok", "name": "x", "system_prompt": "x", "temperature": 2.5}, 400),
        ({"slug": "ok", "name": "x", "system_prompt": "x", "max_output_tokens": 0}, 400),
        ({"slug": "ok", "name": "x", "system_prompt": "x", "model": "threadline-echo", "extra": 1}, 400),
        ({"slug": "ok", "name": "   ", "system_prompt": "x"}, 422),
        ({"slug": "ok", "name": "x", "system_prompt": "a\u0000b"}, 422),
    ],
)
async def test_bad_agents_are_refused(
    client: Client, admin: dict[str, str], body: dict[str, Any], status: int
) -> None:
    response = await client.post("/agents", json=body, headers=admin)
    assert response.status_code == status, response.text


async def test_a_slug_is_unique(client: Client, admin: dict[str, str], slug: str) -> None:
    await create(client, admin, slug)
    again = await client.post(
        "/agents", json={"slug": slug, "name": "x", "system_prompt": "x"}, headers=admin
    )
    assert again.status_code == 409


async def test_there_is_always_exactly_one_default(client: Client, admin: dict[str, str], slug: str) -> None:
    await create(client, admin, slug, is_default=True)
    try:
        defaults = [a["slug"] for a in (await client.get("/agents", headers=admin)).json() if a["is_default"]]
        assert defaults == [slug]
        demote = await client.patch(f"/agents/{slug}", json={"is_default": False}, headers=admin)
        assert demote.status_code == 409
        assert (await client.delete(f"/agents/{slug}", headers=admin)).json()["code"] == "agent_in_use"
    finally:
        restored = await client.patch("/agents/default", json={"is_default": True}, headers=admin)
        assert restored.status_code == 200
    assert (await client.get(f"/agents/{slug}", headers=admin)).json()["is_default"] is False


async def test_an_agent_with_threads_cannot_be_deleted(
    client: Client, auth: AuthHeaders, user: str, admin: dict[str, str], slug: str
) -> None:
    await create(client, admin, slug)
    await new_thread(client, auth(user), agent=slug)
    response = await client.delete(f"/agents/{slug}", headers=admin)
    assert response.status_code == 409
    assert response.json()["code"] == "agent_in_use"


async def test_a_threads_runs_use_its_agents_settings(
    client: Client, auth: AuthHeaders, user: str, admin: dict[str, str], slug: str, upstream: FakeOpenAI
) -> None:
    await create(client, admin, slug, model="gpt-4o-mini", temperature=0.3, max_output_tokens=50)
    thread = await new_thread(client, auth(user), agent=slug)
    assert thread["agent"] == slug
    await chat(client, auth(user), thread["id"], "Ahoy?")
    sent = upstream.requests[-1]
    assert sent["messages"][0]["content"].startswith("You talk like a pirate.")
    assert sent["temperature"] == 0.3
    assert sent.get("max_completion_tokens", sent.get("max_tokens")) == 50
    # A change to the agent applies to the thread's next run.
    await client.patch(f"/agents/{slug}", json={"system_prompt": "You are terse."}, headers=admin)
    await chat(client, auth(user), thread["id"], "And now?")
    assert upstream.requests[-1]["messages"][0]["content"].startswith("You are terse.")


async def test_the_echo_model_agent_needs_no_endpoint(
    client: Client, auth: AuthHeaders, user: str, admin: dict[str, str], slug: str, upstream: FakeOpenAI
) -> None:
    await create(client, admin, slug, model="threadline-echo")
    thread = await new_thread(client, auth(user), agent=slug)
    reply = await chat(client, auth(user), thread["id"], "hello echo")
    assert reply["response"] == 'You said: "hello echo".'
    assert upstream.requests == []
