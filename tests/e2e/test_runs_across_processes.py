"""Runs outlive connections, across two real Threadline processes on one Postgres and one Redis.

Process A and process B are separate `uvicorn` processes; a load balancer could send any request
to either. A run started on A is resumed, replayed and cancelled from B, survives its client
leaving, ends `interrupted` when A is killed, and survives Redis losing its stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import signal
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from redis.asyncio import Redis

from tests.conftest import JWT_SECRET, AuthHeaders
from tests.support.fake_openai import Behaviour, FakeOpenAI
from tests.support.processes import Server, SseStream, eventually, open_sse, server_env

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

LEASE_S = 3
HEARTBEAT_S = 1
STALL_S = 20
# The lease, one sweep interval and slack: how long a dead process's run may still look alive.
ORPHAN_WITHIN_S = 12.0
TERMINAL = {"completed", "failed", "cancelled", "interrupted", "timeout"}


class Cluster:
    """Servers A and B for one test, and where their logs stood when it began."""

    def __init__(self, a: Server, b: Server) -> None:
        self.a, self.b = a, b
        self._offsets = {server.name: server.log_size() for server in (a, b)}

    def logs(self, chars: int = 12_000) -> str:
        parts = []
        for server in (self.a, self.b):
            text = server.log_since(self._offsets[server.name])
            parts.append(f"----- log of {server.name} ({server.url}) during this test -----\n{text[-chars:]}")
        return "\n".join(parts)


@pytest.fixture(scope="module")
def servers(
    database_url: str, redis_url: str, upstream: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Server, Server]]:
    root = tmp_path_factory.mktemp("runs-across-processes")
    a, b = (
        Server(name, env=_env(root / name, database_url, redis_url, upstream), log_dir=root)
        for name in ("A", "B")
    )
    pair = (a, b)
    try:
        for server in pair:
            server.start()
        for server in pair:
            server.wait_ready()
        yield a, b
    finally:
        stuck = []
        for server in pair:
            try:
                server.terminate()
            except RuntimeError as error:
                stuck.append(str(error))
        assert not stuck, "\n".join(stuck)


def _env(data_dir: Path, database_url: str, redis_url: str, upstream: FakeOpenAI) -> dict[str, str]:
    data_dir.mkdir(parents=True, exist_ok=True)
    return server_env(
        {
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "OPENAI_BASE_URL": upstream.url,
            "OPENAI_API_KEY": "test-key",
            "THREADLINE_JWT_SECRET": JWT_SECRET,
            "THREADLINE_MIGRATE_ON_START": "false",
            "THREADLINE_MODEL_MAX_RETRIES": "0",
            "THREADLINE_HEARTBEAT_S": str(HEARTBEAT_S),
            "THREADLINE_RUN_LEASE_S": str(LEASE_S),
            "THREADLINE_SHUTDOWN_GRACE": "5",
            "THREADLINE_DATA_DIR": str(data_dir),
        }
    )


@pytest.fixture
async def cluster(servers: tuple[Server, Server], request: pytest.FixtureRequest) -> AsyncIterator[Cluster]:
    """Both servers up (a test that killed one may have failed before restarting it); logs on failure."""
    for server in servers:
        if not server.alive:
            await asyncio.to_thread(server.restart)
    cluster = Cluster(*servers)
    failed_before = request.session.testsfailed
    yield cluster
    if request.session.testsfailed > failed_before:
        print(cluster.logs())


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10.0) as client:
        yield client


@pytest.fixture(autouse=True)
async def _invariants(cluster: Cluster, db: asyncpg.Pool, user: str) -> AsyncIterator[None]:
    """After every test: no run of its user left live, gap-free seqs, one usage row per finished run."""
    yield
    problems = await invariant_violations(db, user)
    assert not problems, "\n".join(problems) + "\n" + cluster.logs()


async def invariant_violations(db: asyncpg.Pool, user: str) -> list[str]:
    async def live_runs() -> list[asyncpg.Record]:
        return await db.fetch(
            "SELECT id, status, owner, lease_expires_at FROM runs"
            " WHERE user_id = $1 AND status IN ('pending', 'running')",
            user,
        )

    problems = []
    try:
        await eventually(live_runs, lambda rows: not rows, what="runs still live", within_s=ORPHAN_WITHIN_S)
    except AssertionError as error:
        problems.append(str(error))
    for row in await db.fetch(
        "SELECT thread_id, array_agg(seq ORDER BY seq) AS seqs FROM messages WHERE user_id = $1"
        " GROUP BY thread_id",
        user,
    ):
        if row["seqs"] != list(range(1, len(row["seqs"]) + 1)):
            problems.append(f"thread {row['thread_id']} has seqs {row['seqs']}, not 1..n")
    for row in await db.fetch(
        "SELECT r.id, r.status, count(u.id) AS usage_rows FROM runs r"
        " LEFT JOIN usage_events u ON u.run_id = r.id"
        " WHERE r.user_id = $1 AND r.status NOT IN ('pending', 'running')"
        " GROUP BY r.id, r.status HAVING count(u.id) <> 1",
        user,
    ):
        problems.append(f"run {row['id']} ({row['status']}) has {row['usage_rows']} usage_events rows")
    orphans = await db.fetchval(
        "SELECT count(*) FROM usage_events u WHERE u.user_id = $1"
        " AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.id = u.run_id)",
        user,
    )
    if orphans:
        problems.append(f"{orphans} usage_events rows belong to no run")
    return problems


# ----- helpers -----


def words(tag: str, count: int) -> str:
    """A reply of `count` one-word chunks as the fake upstream streams it ("tag0 tag1 ...")."""
    return " ".join(f"{tag}{i}" for i in range(count))


def unique(text: str) -> str:
    return f"{text} [{uuid.uuid4().hex[:8]}]"


def chat(
    server: Server, headers: dict[str, str], body: dict[str, Any], **params: str
) -> AbstractAsyncContextManager[SseStream]:
    """`POST /chat/stream` on `server`, as an `open_sse` context."""
    return open_sse("POST", f"{server.url}/chat/stream", headers=headers, json=body, params=params or None)


def resume(
    server: Server, headers: dict[str, str], run_id: str, **params: str
) -> AbstractAsyncContextManager[SseStream]:
    """`GET /runs/{id}/stream` on `server`, as an `open_sse` context."""
    return open_sse("GET", f"{server.url}/runs/{run_id}/stream", headers=headers, params=params or None)


async def collect(opened: AbstractAsyncContextManager[SseStream]) -> SseStream:
    """Read a whole stream to its `done`."""
    async with opened as stream:
        assert_ok(stream)
        await stream.read_to_done()
    return stream


def assert_ok(stream: SseStream) -> None:
    assert stream.status_code == 200, f"HTTP {stream.status_code}: {stream.response.text}"
    assert stream.response.headers["content-type"].startswith("text/event-stream")


def assert_ids_increase(*streams: SseStream) -> None:
    raw = [i for stream in streams for i in stream.ids]
    ids = [i for i in raw if i is not None]
    assert len(ids) == len(raw), f"an event without an id: {raw}"
    assert all(a < b for a, b in itertools.pairwise(ids)), f"ids do not strictly increase: {ids}"


async def read_run(http: httpx.AsyncClient, server: Server, headers: dict[str, str], run_id: str) -> Any:
    response = await http.get(f"{server.url}/runs/{run_id}", headers=headers)
    assert response.status_code == 200, (
        f"GET /runs/{run_id} on {server.name}: {response.status_code} {response.text}"
    )
    return response.json()


async def run_reaches(
    http: httpx.AsyncClient,
    server: Server,
    headers: dict[str, str],
    run_id: str,
    status: str,
    within_s: float,
) -> dict[str, Any]:
    run: dict[str, Any] = await eventually(
        lambda: read_run(http, server, headers, run_id),
        lambda found: found["status"] in TERMINAL,
        what=f"run {run_id} ending (expected {status})",
        within_s=within_s,
    )
    assert run["status"] == status, f"run ended {run['status']}, expected {status}: {run}"
    return run


def upstream_requests_for(upstream: FakeOpenAI, message: str) -> int:
    """Model calls whose last user message is `message`."""
    count = 0
    for body in list(upstream.requests):
        users = [m for m in body.get("messages", []) if m.get("role") == "user"]
        if users and users[-1].get("content") == message:
            count += 1
    return count


async def delete_run_keys(redis_url: str) -> list[str]:
    """What losing the event log looks like: every `threadline:run:*` key gone."""
    redis = Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=5)
    try:
        keys = [key async for key in redis.scan_iter(match="threadline:run:*", count=1000)]
        if keys:
            await redis.delete(*keys)
        return [key.decode() if isinstance(key, bytes) else str(key) for key in keys]
    finally:
        await redis.aclose()


# ----- tests -----


async def test_a_disconnected_stream_resumes_on_the_other_process(
    cluster: Cluster, http: httpx.AsyncClient, auth: AuthHeaders, user: str, upstream: FakeOpenAI
) -> None:
    reply = words("resume", 20)
    upstream.behaviour = Behaviour(reply=reply, gap_s=0.05)
    headers = auth(user)
    message = unique("resume me")
    async with chat(cluster.a, headers, {"message": message}) as first:
        assert_ok(first)
        await first.read_tokens(3)
        assert first.response.headers["location"] == f"/runs/{first.first('start')['run_id']}/stream"
    # The client left after three tokens; it comes back through the other process.
    run_id = first.first("start")["run_id"]
    async with resume(cluster.b, auth(user, **{"Last-Event-ID": str(first.last_id)}), run_id) as second:
        assert_ok(second)
        done = await second.read_to_done()
    assert first.text + second.text == reply
    assert second.events[0].id is not None
    assert second.events[0].id > first.last_id
    assert_ids_increase(first, second)
    assert done["status"] == "completed", done
    assert done["run_id"] == run_id

    full = await collect(resume(cluster.b, auth(user), run_id))
    assert full.text == reply
    assert second.frames == [b.raw for b in full.events if b.id is not None and b.id > first.last_id]
    assert first.frames == full.frames[: len(first.frames)], "the first client's frames differ in a replay"
    run = await read_run(http, cluster.a, headers, run_id)
    assert (run["status"], run["content"]) == ("completed", reply)
    # The client leaving stopped nothing: one model call, never cut off.
    assert upstream_requests_for(upstream, message) == 1


async def test_last_event_id_query_parameter_works_like_the_header(
    cluster: Cluster, auth: AuthHeaders, user: str, upstream: FakeOpenAI
) -> None:
    reply = words("query", 16)
    upstream.behaviour = Behaviour(reply=reply, gap_s=0.05)
    async with chat(cluster.a, auth(user), {"message": unique("query resume")}) as first:
        assert_ok(first)
        await first.read_tokens(2)
    run_id, after = first.first("start")["run_id"], first.last_id
    async with resume(cluster.b, auth(user), run_id, last_event_id=str(after)) as second:
        assert_ok(second)
        done = await second.read_to_done()
    assert first.text + second.text == reply
    assert_ids_increase(first, second)
    assert done["status"] == "completed", done

    by_header = await collect(resume(cluster.a, auth(user, **{"Last-Event-ID": str(after)}), run_id))
    by_query = await collect(resume(cluster.a, auth(user), run_id, last_event_id=str(after)))
    assert by_query.frames == by_header.frames, "the query parameter and the header resume differently"
    assert second.frames == by_header.frames, "B's resumed frames differ from A's replay of the same run"


async def test_cancel_from_the_other_process_stops_the_model_call_and_keeps_the_partial_text(
    cluster: Cluster, http: httpx.AsyncClient, auth: AuthHeaders, user: str, upstream: FakeOpenAI
) -> None:
    reply = words("cancel", 30)
    upstream.behaviour = Behaviour(reply=reply, gap_s=0.2)
    headers = auth(user)
    message = unique("cancel me")
    async with chat(cluster.a, headers, {"message": message}) as stream:
        assert_ok(stream)
        await stream.read_tokens(3)
        run_id = stream.first("start")["run_id"]
        disconnects = upstream.disconnects
        cancelled = await http.post(f"{cluster.b.url}/runs/{run_id}/cancel", headers=headers)
        assert cancelled.status_code in {200, 202}, f"{cancelled.status_code} {cancelled.text}"
        if cancelled.status_code == 200:
            assert cancelled.json()["status"] == "cancelled", cancelled.json()
        else:
            await run_reaches(http, cluster.b, headers, run_id, "cancelled", within_s=5)
        await upstream.wait_for(lambda: upstream.disconnects > disconnects, timeout=5)
        done = await stream.read_to_done(within_s=5)
    assert done["status"] == "cancelled", done

    run = await read_run(http, cluster.b, headers, run_id)
    assert run["status"] == "cancelled"
    assert run["content"], "the partial text was not kept"
    assert reply.startswith(run["content"])
    assert len(run["content"]) < len(reply), "the run was not stopped early"
    assert stream.text == run["content"], "the stream and the saved text disagree"

    again = await http.post(f"{cluster.b.url}/runs/{run_id}/cancel", headers=headers)
    assert again.status_code == 200, f"{again.status_code} {again.text}"
    assert again.json()["status"] == "cancelled"
    elsewhere = await http.post(f"{cluster.a.url}/runs/{run_id}/cancel", headers=headers)
    assert (elsewhere.status_code, elsewhere.json()["status"]) == (200, "cancelled"), elsewhere.text
    assert upstream_requests_for(upstream, message) == 1


async def test_on_disconnect_cancel_cancels_and_the_default_continues(
    cluster: Cluster, http: httpx.AsyncClient, auth: AuthHeaders, user: str, upstream: FakeOpenAI
) -> None:
    reply = words("leave", 15)
    upstream.behaviour = Behaviour(reply=reply, gap_s=0.1)
    headers = auth(user)
    async with chat(cluster.a, headers, {"message": unique("cancel on leave")}, on_disconnect="cancel") as s:
        assert_ok(s)
        await s.read_tokens(2)
    cancelled = await run_reaches(http, cluster.b, headers, s.first("start")["run_id"], "cancelled", 5)
    assert reply.startswith(cancelled["content"])
    assert len(cancelled["content"]) < len(reply)

    async with chat(cluster.a, headers, {"message": unique("continue on leave")}) as kept:
        assert_ok(kept)
        await kept.read_tokens(2)
    completed = await run_reaches(http, cluster.b, headers, kept.first("start")["run_id"], "completed", 10)
    assert completed["content"] == reply


async def test_a_killed_process_leaves_its_run_interrupted_with_the_partial_text(
    cluster: Cluster,
    http: httpx.AsyncClient,
    auth: AuthHeaders,
    user: str,
    upstream: FakeOpenAI,
    db: asyncpg.Pool,
) -> None:
    reply = words("crash", 30)
    upstream.behaviour = Behaviour(reply=reply, gap_s=0.2)
    headers = auth(user)
    message = unique("kill the process")
    try:
        async with chat(cluster.a, headers, {"message": message}) as stream:
            assert_ok(stream)
            # Six tokens over about a second: the partial reply has been flushed to Postgres by now.
            await stream.read_tokens(6)
            cluster.a.kill()
            with contextlib.suppress(httpx.HTTPError, AssertionError):
                await stream.read_until(lambda _: False, what="the end of a dead stream", within_s=2)
        run_id = stream.first("start")["run_id"]
        await upstream.wait_for(lambda: upstream.disconnects >= 1, timeout=5)

        run = await run_reaches(http, cluster.b, headers, run_id, "interrupted", ORPHAN_WITHIN_S)
        assert run["content"], "nothing of the partial reply was saved"
        assert reply.startswith(run["content"])

        received = stream.text
        seen = (
            f"the client holds id {stream.last_id} ({len(received)} chars); {len(run['content'])} were saved"
        )
        async with resume(cluster.b, auth(user, **{"Last-Event-ID": str(stream.last_id)}), run_id) as rest:
            assert_ok(rest)
            try:
                done = await rest.read_to_done(within_s=5)
            except AssertionError as error:
                raise AssertionError(f"{error}; {seen}") from None
        assert done["status"] == "interrupted", done
        assert reply.startswith(received + rest.text)
        assert_ids_increase(stream, rest)
        full = await collect(resume(cluster.b, headers, run_id))
        assert full.done is not None
        assert full.done["status"] == "interrupted"
        assert full.text == run["content"], "a replay disagrees with the saved partial text"

        users = await db.fetchval(
            "SELECT count(*) FROM messages WHERE user_id = $1 AND role = 'user' AND content = $2",
            user,
            message,
        )
        assert users == 1
    finally:
        await asyncio.to_thread(cluster.a.restart)


async def test_a_lost_redis_stream_falls_back_to_postgres(
    cluster: Cluster, redis_url: str, auth: AuthHeaders, user: str, upstream: FakeOpenAI
) -> None:
    reply = words("lost", 20)
    upstream.behaviour = Behaviour(reply=reply, gap_s=0.1)
    async with chat(cluster.a, auth(user), {"message": unique("lose redis")}) as first:
        assert_ok(first)
        await first.read_tokens(3)
    run_id = first.first("start")["run_id"]
    deleted = await delete_run_keys(redis_url)
    assert any(run_id in key for key in deleted), f"no threadline:run:* key for the live run; found {deleted}"

    async with resume(cluster.b, auth(user, **{"Last-Event-ID": str(first.last_id)}), run_id) as second:
        assert_ok(second)
        done = await second.read_to_done()
    assert first.text + second.text == reply
    assert_ids_increase(first, second)
    assert done["status"] == "completed", done
    full = await collect(resume(cluster.b, auth(user), run_id))
    assert full.text == reply
    assert full.events[0].type == "start"


async def test_a_retried_message_replays_one_run_across_processes(
    cluster: Cluster, auth: AuthHeaders, user: str, upstream: FakeOpenAI, db: asyncpg.Pool
) -> None:
    reply = "Said once, however often you ask."
    upstream.behaviour = Behaviour(reply=reply, gap_s=0.02)
    headers = auth(user)
    body = {"message": unique("retried"), "client_message_id": uuid.uuid4().hex}
    first = await collect(chat(cluster.a, headers, body))
    retried = await collect(chat(cluster.b, headers, body))
    assert retried.first("start")["run_id"] == first.first("start")["run_id"]
    assert (first.text, retried.text) == (reply, reply)

    racing = {"message": unique("raced"), "client_message_id": uuid.uuid4().hex}
    on_a, on_b = await asyncio.gather(
        collect(chat(cluster.a, headers, racing)), collect(chat(cluster.b, headers, racing))
    )
    assert on_a.first("start")["run_id"] == on_b.first("start")["run_id"]
    assert (on_a.text, on_b.text) == (reply, reply)

    for sent in (body, racing):
        assert upstream_requests_for(upstream, sent["message"]) == 1, sent
        count = await db.fetchval(
            "SELECT count(*) FROM messages WHERE user_id = $1 AND client_message_id = $2",
            user,
            sent["client_message_id"],
        )
        assert count == 1
    assert await db.fetchval("SELECT count(*) FROM runs WHERE user_id = $1", user) == 2


async def test_a_second_message_while_a_run_is_live_is_409(
    cluster: Cluster, http: httpx.AsyncClient, auth: AuthHeaders, user: str, upstream: FakeOpenAI
) -> None:
    reply = words("busy", 15)
    upstream.behaviour = Behaviour(reply=reply, gap_s=0.1)
    headers = auth(user)
    async with chat(cluster.a, headers, {"message": unique("first")}) as stream:
        assert_ok(stream)
        await stream.read_tokens(1)
        thread_id = stream.first("start")["thread_id"]
        second = unique("second")
        for server, body in (
            (cluster.b, {"message": second, "thread_id": thread_id}),
            (cluster.a, {"message": second}),
        ):
            response = await http.post(f"{server.url}/chat", json=body, headers=headers)
            assert response.status_code == 409, f"{server.name}: {response.status_code} {response.text}"
            assert response.headers["content-type"].startswith("application/problem+json")
            assert response.json()["code"] == "run_in_progress", response.json()
        done = await stream.read_to_done()
    assert done["status"] == "completed"
    assert stream.text == reply
    assert upstream_requests_for(upstream, second) == 0


async def test_heartbeats_keep_a_stalled_stream_alive(
    cluster: Cluster, auth: AuthHeaders, user: str, upstream: FakeOpenAI
) -> None:
    # The 20 s stall of issue 3, with 1 s heartbeats: a proxy reading with a timeout shorter than the
    # silence still sees bytes every second.
    reply = "alpha beta gamma delta"
    upstream.behaviour = Behaviour(reply=reply, stall_after=1, stall_s=STALL_S)
    async with chat(cluster.a, auth(user), {"message": unique("stall")}) as stream:
        assert_ok(stream)
        await stream.read_tokens(1)
        run_id = stream.first("start")["run_id"]
        async with resume(cluster.b, auth(user, **{"Last-Event-ID": str(stream.last_id)}), run_id) as other:
            assert_ok(other)
            here, there = await asyncio.gather(
                stream.read_to_done(within_s=STALL_S + 15), other.read_to_done(within_s=STALL_S + 15)
            )
    assert stream.blocks[0].retry is not None, f"no retry hint first: {stream.describe()}"
    assert (here["status"], there["status"]) == ("completed", "completed"), (here, there)
    assert stream.text == reply
    assert other.text == reply.removeprefix("alpha ")
    # A sent the first token, then heard nothing for 20 s; B joined after that token.
    first_tokens = [i for i, block in enumerate(stream.blocks) if block.type == "token"][:2]
    silences = {
        "A": stream.blocks[first_tokens[0] : first_tokens[1]],
        "B": other.blocks[: next(i for i, block in enumerate(other.blocks) if block.type == "token")],
    }
    for name, blocks in silences.items():
        heartbeats = [line for block in blocks for line in block.comments]
        expected = STALL_S // HEARTBEAT_S - 3
        assert len(heartbeats) >= expected, f"{name}: {len(heartbeats)} heartbeats in a {STALL_S} s stall"
        assert all(line.startswith(": ") for line in heartbeats), heartbeats


async def test_if_busy_interrupt_cancels_the_live_run_and_answers_the_new_message(
    cluster: Cluster, http: httpx.AsyncClient, auth: AuthHeaders, user: str, upstream: FakeOpenAI
) -> None:
    upstream.behaviour = Behaviour(reply=words("slow", 30), gap_s=0.2)
    headers = auth(user)
    async with chat(cluster.a, headers, {"message": unique("first")}) as stream:
        assert_ok(stream)
        await stream.read_tokens(2)
        thread_id, first_run = stream.first("start")["thread_id"], stream.first("start")["run_id"]
        upstream.behaviour = Behaviour(reply="fresh answer")
        response = await http.post(
            f"{cluster.b.url}/chat",
            params={"if_busy": "interrupt"},
            json={"message": unique("second"), "thread_id": thread_id},
            headers=headers,
        )
        assert response.status_code == 200, response.text
        done = await stream.read_to_done()
    assert done["status"] == "cancelled"
    assert (response.json()["status"], response.json()["response"]) == ("completed", "fresh answer")
    first = (await http.get(f"{cluster.b.url}/runs/{first_run}", headers=headers)).json()
    assert first["status"] == "cancelled"
    assert first["content"]
    assert words("slow", 30).startswith(first["content"])


async def test_if_busy_enqueue_waits_for_the_live_run_then_answers(
    cluster: Cluster, http: httpx.AsyncClient, auth: AuthHeaders, user: str, upstream: FakeOpenAI
) -> None:
    reply = words("ahead", 10)
    upstream.behaviour = Behaviour(reply=reply, gap_s=0.1)
    headers = auth(user)
    async with chat(cluster.a, headers, {"message": unique("first")}) as stream:
        assert_ok(stream)
        await stream.read_tokens(1)
        thread_id = stream.first("start")["thread_id"]
        queued = asyncio.create_task(
            http.post(
                f"{cluster.b.url}/chat",
                params={"if_busy": "enqueue"},
                json={"message": unique("queued"), "thread_id": thread_id},
                headers=headers,
            )
        )
        done = await stream.read_to_done()
        response = await queued
    assert done["status"] == "completed"
    assert stream.text == reply
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "completed"
    history = (await http.get(f"{cluster.a.url}/chat/history?thread_id={thread_id}", headers=headers)).json()
    assert [m["role"] for m in history["messages"]] == ["user", "assistant", "user", "assistant"]
    assert history["messages"][1]["content"] == reply


async def test_sigterm_interrupts_what_outlives_the_grace_period_and_exits(
    cluster: Cluster, http: httpx.AsyncClient, auth: AuthHeaders, user: str, upstream: FakeOpenAI
) -> None:
    # Grace is 5 s; this reply needs about 12 s. Its client has left, so nothing holds uvicorn open.
    reply = words("long", 60)
    upstream.behaviour = Behaviour(reply=reply, gap_s=0.2)
    headers = auth(user)
    async with chat(cluster.a, headers, {"message": unique("long")}) as stream:
        assert_ok(stream)
        await stream.read_tokens(2)
        run_id = stream.first("start")["run_id"]
    started = asyncio.get_running_loop().time()
    exit_code = await asyncio.to_thread(cluster.a.terminate)
    took = asyncio.get_running_loop().time() - started
    # uvicorn drains, then re-raises the signal it caught: a clean exit either way.
    assert exit_code in (0, -signal.SIGTERM)
    assert 4.0 <= took < 12.0, f"SIGTERM took {took:.1f} s with a 5 s grace period"
    run = (await http.get(f"{cluster.b.url}/runs/{run_id}", headers=headers)).json()
    assert run["status"] == "interrupted"
    assert run["content"]
    assert reply.startswith(run["content"])
    await asyncio.to_thread(cluster.a.restart)
