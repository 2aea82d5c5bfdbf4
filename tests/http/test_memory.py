"""Memory in runs: what a user said in an older thread comes back as `sources` and in the reply."""

from __future__ import annotations

import uuid

import asyncpg
from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.conftest import AuthHeaders
from tests.support.memory import echo_agent, embedded
from tests.support.sessions import chat, in_app, new_thread
from tests.support.sse import parse_sse, reply_text
from threadline.adapters.memory_events import MemoryEventLog
from threadline.service.streams import RunStreams

Client = AsyncTestClient[Litestar]


async def test_a_reply_recalls_a_fact_from_an_older_thread(
    client: Client, auth: AuthHeaders, user: str, db: asyncpg.Pool
) -> None:
    agent = await echo_agent(client, auth)
    older = await new_thread(client, auth(user), agent=agent)
    told = await chat(client, auth(user), older["id"], "My locker code at the gym is 4417.")
    await chat(client, auth(user), older["id"], "I like green tea in the morning.")
    await embedded(db, user, 4)

    newer = await new_thread(client, auth(user), agent=agent)
    response = await client.post(
        "/chat/stream",
        json={"message": "What is my gym locker code?", "thread_id": newer["id"]},
        headers=auth(user),
    )
    events = parse_sse(response.content)
    assert [e.type for e in events[:2]] == ["start", "sources"]
    assert events[1].id == 2
    sources = events[1].data["sources"]
    assert sources[0]["message_id"] == told["message_id"] or sources[0]["thread_id"] == older["id"]
    assert {s["thread_id"] for s in sources} == {older["id"]}
    assert all(0 < s["score"] <= 1 for s in sources)
    assert "My locker code at the gym is 4417." in [s["snippet"] for s in sources]
    assert "green tea" not in " ".join(s["snippet"] for s in sources)
    reply = reply_text(events)
    assert reply.startswith('You said: "What is my gym locker code?". I remember: ')
    assert "4417" in reply

    run_id = events[0].data["run_id"]
    run = (await client.get(f"/runs/{run_id}", headers=auth(user))).json()
    assert run["sources"] == sources
    stored = await db.fetchval("SELECT retrieved FROM runs WHERE id = $1", uuid.UUID(run_id))
    assert stored is not None


async def test_the_sources_event_replays_byte_identical_from_postgres(
    client: Client, auth: AuthHeaders, user: str, db: asyncpg.Pool
) -> None:
    agent = await echo_agent(client, auth)
    older = await new_thread(client, auth(user), agent=agent)
    await chat(client, auth(user), older["id"], "The wifi password at the cabin is larch-river-88.")
    await embedded(db, user, 2)
    newer = await new_thread(client, auth(user), agent=agent)
    live = await client.post(
        "/chat/stream",
        json={"message": "cabin wifi password?", "thread_id": newer["id"]},
        headers=auth(user),
    )
    run_id = uuid.UUID(parse_sse(live.content)[0].data["run_id"])
    sources_frame = next(f for f in live.content.split(b"\n\n") if f.startswith(b"id: 2\n"))
    # An event log that never saw the run: the stream is rebuilt from Postgres alone.
    services = client.app.state.services
    rebuilder = RunStreams(
        events=MemoryEventLog(), store=services.store, heartbeat_s=15, stream_url=lambda *_: "/unused"
    )

    async def rebuilt() -> list[bytes]:
        return [frame async for frame in rebuilder.follow(run_id, 1)]

    frames = await in_app(client, rebuilt)
    assert frames[0].rstrip(b"\n") == sources_frame


async def test_memory_never_crosses_users(
    client: Client, auth: AuthHeaders, user: str, db: asyncpg.Pool
) -> None:
    canary = f"canary-{uuid.uuid4().hex}"
    agent = await echo_agent(client, auth)
    thread = await new_thread(client, auth(user), agent=agent)
    await chat(client, auth(user), thread["id"], f"My secret token is {canary}")
    await embedded(db, user, 2)

    intruder = f"{user}-intruder"
    theirs = await new_thread(client, auth(intruder), agent=agent)
    response = await client.post(
        "/chat/stream",
        json={"message": f"My secret token is {canary}", "thread_id": theirs["id"]},
        headers=auth(intruder),
    )
    events = parse_sse(response.content)
    assert "sources" not in [e.type for e in events]
    assert reply_text(events) == f'You said: "My secret token is {canary}".'
    run = await db.fetchrow("SELECT retrieved FROM runs WHERE user_id = $1", intruder)
    assert run is not None
    assert canary not in str(run["retrieved"])


async def test_the_recent_window_is_not_recalled_twice(
    client: Client, auth: AuthHeaders, user: str, db: asyncpg.Pool
) -> None:
    agent = await echo_agent(client, auth)
    thread = await new_thread(client, auth(user), agent=agent)
    await chat(client, auth(user), thread["id"], "The boat is called Marigold.")
    await embedded(db, user, 2)
    response = await client.post(
        "/chat/stream",
        json={"message": "What is the boat called?", "thread_id": thread["id"]},
        headers=auth(user),
    )
    # The fact is in the same thread's recent messages: the prompt has it, memory does not repeat it.
    assert "sources" not in [e.type for e in parse_sse(response.content)]
