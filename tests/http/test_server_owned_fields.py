"""What the server records is the server's: `metadata.client` never comes from a request body."""

from __future__ import annotations

import json
import uuid

import asyncpg
import pytest

from tests.conftest import AuthHeaders
from tests.support.fake_openai import FakeOpenAI
from tests.support.sessions import Client, new_thread

SPOOFED = {"ip": "203.0.113.66", "user_agent": "spoofed", "device": {"mobile": True}}


@pytest.mark.parametrize("route", ["/chat", "/chat/stream"])
async def test_a_chat_cannot_set_the_recorded_client(
    client: Client, auth: AuthHeaders, user: str, db: asyncpg.Pool, upstream: FakeOpenAI, route: str
) -> None:
    # No user agent and no usable peer address: the server has nothing of its own to record, which is
    # when a client's `metadata.client` used to be stored as if the server had recorded it.
    headers = auth(user, **{"User-Agent": ""})
    body = {"message": "who am I?", "metadata": {"client": SPOOFED, "page": "/help"}}

    refused = await client.post(route, json=body, headers=headers)

    assert refused.status_code == 422, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert "metadata.client" in refused.json()["detail"]
    stored = await db.fetch("SELECT metadata FROM messages WHERE user_id = $1", user)
    threads = await db.fetch("SELECT metadata FROM threads WHERE user_id = $1", user)
    assert [json.loads(r["metadata"]) for r in [*stored, *threads]] == []
    assert upstream.requests == []


async def test_other_metadata_is_kept_and_the_client_is_the_servers(
    client: Client, auth: AuthHeaders, user: str, db: asyncpg.Pool
) -> None:
    thread = await new_thread(client, auth(user, **{"User-Agent": ""}))
    reply = await client.post(
        "/chat",
        json={"message": "hi", "thread_id": thread["id"], "metadata": {"page": "/help"}},
        headers=auth(user, **{"User-Agent": "curl/8.5.0"}),
    )
    assert reply.status_code == 200, reply.text
    recorded = await db.fetchval(
        "SELECT metadata FROM messages WHERE id = (SELECT user_message_id FROM runs WHERE id = $1)",
        uuid.UUID(reply.json()["run_id"]),
    )
    assert json.loads(recorded) == {
        "page": "/help",
        "client": {"user_agent": "curl/8.5.0", "device": {"mobile": False}},
    }
