"""Who sent each message is recorded on threads and messages; IPs and user agents expire."""

from __future__ import annotations

import uuid

import asyncpg
from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.conftest import AuthHeaders
from tests.support.sessions import chat, in_app, new_thread, sessions_of
from threadline.jobs import PURGE_JOB

Client = AsyncTestClient[Litestar]
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1"
)


async def test_a_chat_records_the_client_on_its_new_thread_and_its_message(
    client: Client, auth: AuthHeaders, user: str, db: asyncpg.Pool
) -> None:
    headers = auth(user, **{"User-Agent": IPHONE, "X-Forwarded-For": "198.51.100.7"})
    reply = (
        await client.post("/chat", json={"message": "hi", "metadata": {"page": "/help"}}, headers=headers)
    ).json()
    thread_meta = await db.fetchval(
        "SELECT metadata FROM threads WHERE id = $1", uuid.UUID(reply["thread_id"])
    )
    message_meta = await db.fetchval(
        "SELECT m.metadata FROM messages m JOIN runs r ON r.user_message_id = m.id WHERE r.id = $1",
        uuid.UUID(reply["run_id"]),
    )
    for recorded in (thread_meta, message_meta):
        assert '"page": "/help"' in recorded
        assert IPHONE in recorded
        assert '"device": {"mobile": true, "platform": "iOS"}' in recorded
        # The test client's peer is not a trusted proxy (none is by default): its header is ignored.
        assert "198.51.100.7" not in recorded


async def test_the_client_is_not_part_of_what_makes_a_retry_the_same_request(
    client: Client, auth: AuthHeaders, user: str
) -> None:
    body = {"message": "once", "client_message_id": f"m-{uuid.uuid4()}"}
    first = await client.post("/chat", json=body, headers=auth(user, **{"User-Agent": "phone"}))
    retry = await client.post("/chat", json=body, headers=auth(user, **{"User-Agent": "laptop"}))
    assert retry.status_code == 200
    assert retry.json()["run_id"] == first.json()["run_id"]


async def test_new_threads_and_regenerated_questions_record_the_client_too(
    client: Client, auth: AuthHeaders, user: str
) -> None:
    headers = auth(user, **{"User-Agent": "curl/8.5.0"})
    thread = await new_thread(client, headers)
    assert thread["metadata"]["client"] == {"user_agent": "curl/8.5.0", "device": {"mobile": False}}
    await chat(client, headers, thread["id"], "first")
    await client.post(f"/threads/{thread['id']}/regenerate", json={"message": "edited"}, headers=headers)
    page = (await client.get(f"/threads/{thread['id']}/messages", headers=headers)).json()
    assert page["messages"][0]["metadata"]["client"]["user_agent"] == "curl/8.5.0"


async def test_the_retention_job_purges_old_ips_and_user_agents_only(
    client: Client, auth: AuthHeaders, user: str, db: asyncpg.Pool
) -> None:
    old, recent = await new_thread(client, auth(user)), await new_thread(client, auth(user))
    for thread in (old, recent):
        await chat(client, auth(user), thread["id"], "hello")
        await db.execute(
            "UPDATE threads SET metadata = jsonb_set(metadata, '{client,ip}', to_jsonb($2::text)) "
            "WHERE id = $1",
            uuid.UUID(thread["id"]),
            "203.0.113.9",
        )
    for table, column in (("threads", "id"), ("messages", "thread_id")):
        await db.execute(
            f"UPDATE {table} SET created_at = now() - interval '31 days' WHERE {column} = $1",
            uuid.UUID(old["id"]),
        )
    await in_app(client, sessions_of(client).jobs.run, PURGE_JOB, {})
    old_meta = (await client.get(f"/threads/{old['id']}", headers=auth(user))).json()["metadata"]["client"]
    assert "ip" not in old_meta
    assert "user_agent" not in old_meta
    assert "device" in old_meta
    recent_meta = (await client.get(f"/threads/{recent['id']}", headers=auth(user))).json()["metadata"][
        "client"
    ]
    assert recent_meta["ip"] == "203.0.113.9"
    assert "user_agent" in recent_meta
    messages = await db.fetch(
        "SELECT thread_id, metadata -> 'client' ? 'user_agent' AS has_agent FROM messages "
        "WHERE thread_id = ANY($1::uuid[]) AND role = 'user'",
        [uuid.UUID(old["id"]), uuid.UUID(recent["id"])],
    )
    assert {str(m["thread_id"]): m["has_agent"] for m in messages} == {old["id"]: False, recent["id"]: True}
