"""`/runs`: state, replay from any event id, run-scoped stream tokens for `EventSource`, cancel."""

from __future__ import annotations

import uuid

import asyncpg
from litestar import Litestar
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from tests.conftest import AuthHeaders
from tests.support.fake_openai import Behaviour, FakeOpenAI
from tests.support.sessions import in_app
from tests.support.sse import parse_sse, reply_text
from threadline.adapters.memory_events import MemoryEventLog
from threadline.domain.events import Frame
from threadline.service.streams import RunStreams

Client = AsyncTestClient[Litestar]


async def finished_stream(client: Client, headers: dict[str, str], reply: str, upstream: FakeOpenAI) -> bytes:
    upstream.behaviour = Behaviour(reply=reply)
    response = await client.post("/chat/stream", json={"message": "go"}, headers=headers)
    assert response.status_code == 200
    return response.content


async def test_a_finished_run_replays_byte_identical_from_any_event_id(
    client: Client, auth: AuthHeaders, user: str, upstream: FakeOpenAI
) -> None:
    original = await finished_stream(client, auth(user), "a b c d e f", upstream)
    events = parse_sse(original)
    run_id = events[0].data["run_id"]
    full = await client.get(f"/runs/{run_id}/stream", headers=auth(user))
    assert full.content == original
    for cut in range(len(events)):
        last_id = events[cut].id
        rest = await client.get(
            f"/runs/{run_id}/stream", headers=auth(user, **{"Last-Event-ID": str(last_id)})
        )
        assert parse_sse(rest.content) == events[cut + 1 :]
        by_query = await client.get(f"/runs/{run_id}/stream?last_event_id={last_id}", headers=auth(user))
        assert by_query.content == rest.content


async def test_replay_falls_back_to_postgres_with_the_same_text_and_ending(
    client: Client, auth: AuthHeaders, user: str, upstream: FakeOpenAI, redis_url: str
) -> None:
    events = parse_sse(await finished_stream(client, auth(user), "one two three four", upstream))
    run_id = uuid.UUID(events[0].data["run_id"])
    redis = Redis.from_url(redis_url)
    try:
        assert await redis.delete(f"threadline:run:{run_id}") == 1  # Redis loses the run's stream
    finally:
        await redis.aclose()
    token_ids = [e.id for e in events if e.type == "token"]
    resumed = parse_sse(
        (
            await client.get(
                f"/runs/{run_id}/stream", headers=auth(user, **{"Last-Event-ID": str(token_ids[1])})
            )
        ).content
    )
    assert (
        reply_text(events[: events.index(next(e for e in events if e.id == token_ids[1])) + 1])
        + reply_text(resumed)
        == "one two three four"
    )
    assert resumed[-2:] == events[-2:]


async def test_a_reader_ahead_of_the_log_gets_its_ending_from_postgres(
    client: Client, auth: AuthHeaders, user: str, upstream: FakeOpenAI
) -> None:
    events = parse_sse(await finished_stream(client, auth(user), "one two three four", upstream))
    run_id = uuid.UUID(events[0].data["run_id"])
    done_id = events[-1].id
    assert done_id is not None
    # A log that got the run's start but not the rest (its producer died before mirroring it), and
    # a client that read the tokens from that producer: its position is past everything the log has.
    log = MemoryEventLog()
    await log.append(run_id, Frame(1, b"id: 1\ndata: {}\n\n"))
    await log.finish(run_id)
    streams = RunStreams(
        events=log, store=client.app.state.services.store, heartbeat_s=15, stream_url=lambda *_: "/unused"
    )
    ahead = done_id + 5

    async def follow() -> list[bytes]:
        return [data async for data in streams.follow(run_id, ahead)]

    ending = parse_sse(b"".join(await in_app(client, follow)))
    assert [event.type for event in ending] == ["usage", "done"]
    assert ending[-1].data["status"] == "completed"
    assert all(event.id is not None and event.id > ahead for event in ending)


async def test_the_start_events_stream_url_works_without_headers(
    client: Client, auth: AuthHeaders, user: str, upstream: FakeOpenAI
) -> None:
    events = parse_sse(await finished_stream(client, auth(user), "hello world", upstream))
    stream_url = events[0].data["stream_url"]
    replay = await client.get(stream_url)
    assert replay.status_code == 200
    assert reply_text(parse_sse(replay.content)) == "hello world"
    token = stream_url.split("token=")[1]
    other_run = await client.get(f"/runs/{uuid.uuid4()}/stream?token={token}")
    assert other_run.status_code == 401
    as_bearer = await client.get("/chat/history", headers={"Authorization": f"Bearer {token}"})
    assert as_bearer.status_code == 401


async def test_get_run_and_cancel_a_finished_run_is_idempotent(
    client: Client, auth: AuthHeaders, user: str, upstream: FakeOpenAI, db: asyncpg.Pool
) -> None:
    events = parse_sse(await finished_stream(client, auth(user), "done already", upstream))
    run_id = events[0].data["run_id"]
    run = (await client.get(f"/runs/{run_id}", headers=auth(user))).json()
    assert (run["status"], run["content"]) == ("completed", "done already")
    assert run["first_token_at"] is not None
    for _ in range(2):
        cancelled = await client.post(f"/runs/{run_id}/cancel", headers=auth(user))
        assert cancelled.status_code == 200
        assert cancelled.json()["status"] == "completed"
    assert await db.fetchval("SELECT count(*) FROM usage_events WHERE run_id = $1", uuid.UUID(run_id)) == 1
    missing = await client.post(f"/runs/{uuid.uuid4()}/cancel", headers=auth(user))
    assert missing.status_code == 404
