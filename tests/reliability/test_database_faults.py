"""Postgres stopped under live streams, and a pool with every connection held: 503s, then recovery.

Both cases run on a Postgres of this module's own (an `EmbeddedPostgres` in a temporary directory),
so stopping it or locking its rows touches no other test.
"""

from __future__ import annotations

import asyncio
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from tests.conftest import JWT_SECRET, with_database
from tests.reliability.conftest import FULL, Figures, app_env, scale
from tests.support.fake_openai import Behaviour, FakeOpenAI
from tests.support.processes import Server, SseBlock, SseStream, eventually, open_sse
from threadline.db import migrate
from threadline.embedded import EmbeddedPostgres
from threadline.http.auth import issue_token
from threadline.lifespan import EMBEDDING_DIM

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]
# How long Postgres stays down: the issue's 10 s under `make reliability`, a few seconds in `make test`.
OUTAGE_S = 10.0 if FULL else 3.0
# The contract: a request that cannot be served while Postgres is down says so quickly.
REFUSE_WITHIN_S = 2.0
# The pool: the defaults (20 connections, 5 s to acquire one) under `make reliability`; small and quick in
# `make test`, so that holding all of it takes a few requests and a refusal a second.
POOL_SIZE, ACQUIRE_S = (20, 5.0) if FULL else (3, 1.0)
GAP_S = 0.1
RUNS_OF = """
    SELECT r.user_id, r.status, m.content, r.first_token_at IS NOT NULL AS first_token_known,
           (SELECT count(*) FROM usage_events u WHERE u.run_id = r.id) AS usage_rows,
           (SELECT count(*) FROM messages q WHERE q.user_id = r.user_id AND q.role = 'user') AS questions
    FROM runs r JOIN messages m ON m.id = r.assistant_message_id
    WHERE r.user_id = ANY($1)
"""
WAITING_ON_LOCKS = """
    SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'
"""


class StoppablePostgres:
    """A Postgres of this module's own, stopped (fast shutdown) and started again on its data dir."""

    def __init__(self) -> None:
        # Not pytest's tmp_path: as root the server runs as another user (see tests/conftest.py).
        self.data_dir = Path(tempfile.mkdtemp(prefix="threadline-pg-faults-"))
        self.server = EmbeddedPostgres(self.data_dir)
        self.server_url = self.server.start()

    def stop(self) -> None:
        self.server.stop()

    def start(self) -> None:
        assert self.server.start() == self.server_url

    @property
    def running(self) -> bool:
        return self.server.pid is not None

    def close(self) -> None:
        self.server.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def postgres() -> Iterator[StoppablePostgres]:
    server = StoppablePostgres()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
async def faults_database_url(postgres: StoppablePostgres) -> str:
    """A database on the module's own server, migrated the way `threadline migrate` does it."""
    admin = await asyncpg.connect(postgres.server_url, timeout=10)
    try:
        await admin.execute('CREATE DATABASE "threadline"')
    finally:
        await admin.close()
    url = with_database(postgres.server_url, "threadline")
    await asyncio.to_thread(migrate.upgrade, url, embedding_dim=EMBEDDING_DIM)
    return url


@pytest.fixture(scope="module")
async def server(
    faults_database_url: str, redis_url: str, upstream: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Server]:
    """One Threadline process on the module's Postgres, with the pool above."""
    root = tmp_path_factory.mktemp("database-faults")
    pool = {"THREADLINE_DB_POOL_SIZE": str(POOL_SIZE), "THREADLINE_DB_ACQUIRE_TIMEOUT": str(ACQUIRE_S)}
    server = Server(
        "A", env=app_env(root / "A", faults_database_url, redis_url, upstream, **pool), log_dir=root
    )
    await asyncio.to_thread(server.start)
    try:
        await asyncio.to_thread(server.wait_ready)
        yield server
    finally:
        try:
            await asyncio.to_thread(server.terminate)
        except RuntimeError:
            await asyncio.to_thread(server.kill)


def words(tag: str, count: int) -> str:
    return " ".join(f"{tag}{i}" for i in range(count))


def headers(user_id: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(JWT_SECRET, user_id)}"}


def refused_properly(response: httpx.Response) -> bool:
    """503, problem+json and a Retry-After: what a client needs to come back later."""
    return (
        response.status_code == 503
        and response.headers.get("content-type", "").startswith("application/problem+json")
        and response.headers.get("retry-after", "").isdigit()
    )


class Live:
    """One stream read to its end, with when each token arrived."""

    def __init__(self, user_id: str, reply: str) -> None:
        self.user_id, self.reply = user_id, reply
        self.arrivals: list[float] = []
        self.stream: SseStream | None = None
        self.under_way = asyncio.Event()

    def tokens_between(self, start: float, end: float) -> int:
        return sum(start <= at < end for at in self.arrivals)

    @property
    def done(self) -> dict[str, Any] | None:
        return self.stream.done if self.stream else None

    @property
    def text(self) -> str:
        return self.stream.text if self.stream else ""

    def saved_as_streamed(self, row: asyncpg.Record | None) -> bool:
        """Postgres has the run as `done` announced it: its status, the whole text, once, accounted for."""
        if row is None or self.done is None:
            return False
        found = (row["status"], row["content"], row["questions"], row["usage_rows"], row["first_token_known"])
        return found == (self.done["status"], self.text, 1, 1, True)


async def _follow(server: Server, live: Live, *, under_way_after: int) -> Live:
    """Read a new stream to `done`; `under_way` is set once `under_way_after` tokens have arrived."""
    async with open_sse(
        "POST", f"{server.url}/chat/stream", headers=headers(live.user_id), json={"message": live.user_id}
    ) as stream:
        live.stream = stream
        assert stream.status_code == 200, stream.describe()
        if under_way_after == 0:
            live.under_way.set()

        def arrived(block: SseBlock) -> bool:
            if block.type == "token":
                live.arrivals.append(time.monotonic())
                if len(live.arrivals) >= under_way_after:
                    live.under_way.set()
            return block.type == "done"

        await stream.read_until(arrived, what="a `done` event", within_s=OUTAGE_S + 90)
    return live


async def _start_group(
    server: Server, upstream: FakeOpenAI, behaviour: Behaviour, tag: str, count: int, *, under_way_after: int
) -> tuple[list[Live], list[asyncio.Task[Live]]]:
    """Streams started under `behaviour`; returns once each is under way (the fake reads it per request)."""
    upstream.behaviour = behaviour
    assert behaviour.reply is not None
    group = [Live(f"{tag}-{uuid.uuid4().hex[:8]}", behaviour.reply) for _ in range(count)]
    tasks = [asyncio.create_task(_follow(server, live, under_way_after=under_way_after)) for live in group]
    async with asyncio.timeout(60):
        await asyncio.gather(*(live.under_way.wait() for live in group))
    return group, tasks


async def _probe_while_down(
    http: httpx.AsyncClient, server: Server, until: float
) -> list[tuple[bool, float]]:
    """New chat requests, one every half second until `until`: (refused properly, seconds to answer)."""
    answers: list[tuple[bool, float]] = []
    while time.monotonic() < until or not answers:
        sent = time.monotonic()
        response = await http.post(
            f"{server.url}/chat/stream",
            headers=headers(f"probe-{uuid.uuid4().hex[:8]}"),
            json={"message": "hi"},
        )
        answers.append((refused_properly(response), time.monotonic() - sent))
        await asyncio.sleep(0.5)
    return answers


async def _chat(http: httpx.AsyncClient, server: Server, user_id: str, **body: Any) -> httpx.Response:
    return await http.post(f"{server.url}/chat", headers=headers(user_id), json={"message": "hello", **body})


@pytest.mark.case("Postgres stopped")
async def test_streams_flow_and_new_requests_get_503_while_postgres_is_stopped(
    postgres: StoppablePostgres,
    faults_database_url: str,
    server: Server,
    upstream: FakeOpenAI,
    http: httpx.AsyncClient,
    figures: Figures,
) -> None:
    per = scale(3, 10)
    pid = server.pid
    # Outlasting the outage; ending half-way through it; waiting for a first token that comes during it.
    long, long_tasks = await _start_group(
        server, upstream, Behaviour(reply=words("long", 5 + int(OUTAGE_S / GAP_S) + 20), gap_s=GAP_S),
        "outlasting", per, under_way_after=3,
    )  # fmt: skip
    ending, ending_tasks = await _start_group(
        server, upstream, Behaviour(reply=words("end", 5 + int(OUTAGE_S / GAP_S / 2)), gap_s=GAP_S),
        "ending", per, under_way_after=3,
    )  # fmt: skip
    late, late_tasks = await _start_group(
        server, upstream, Behaviour(reply=words("late", 10), ttft_s=OUTAGE_S / 2, gap_s=GAP_S),
        "late", per, under_way_after=0,
    )  # fmt: skip
    # Every late stream's model call is out before Postgres goes: its first token comes during the outage.
    await upstream.wait_for(lambda: len(upstream.requests) == 3 * per, timeout=30)
    try:
        # From the stop signal on, Postgres takes no new session and ends every open one.
        down_at = time.monotonic()
        await asyncio.to_thread(postgres.stop)
        probes = await _probe_while_down(http, server, until=down_at + OUTAGE_S)
        ready = await http.get(f"{server.url}/ready")
        await asyncio.sleep(max(0.0, down_at + OUTAGE_S - time.monotonic()))
        up_at = time.monotonic()
    finally:
        if not postgres.running:  # whatever failed above, the next case needs its database
            await asyncio.to_thread(postgres.start)
    back_at = time.monotonic()
    upstream.behaviour = Behaviour(reply="back")

    async def served() -> int:
        return (await _chat(http, server, f"after-{uuid.uuid4().hex[:8]}")).status_code

    await eventually(served, lambda status: status == 200, what="a request served again", within_s=60)
    recovered_s = time.monotonic() - back_at
    streams = [*long, *ending, *late]
    await asyncio.gather(*long_tasks, *ending_tasks, *late_tasks)
    same_process = server.alive and server.pid == pid

    connection = await asyncpg.connect(faults_database_url, timeout=10)
    try:
        rows = await connection.fetch(RUNS_OF, [live.user_id for live in streams])
    finally:
        await connection.close()
    saved = {row["user_id"]: row for row in rows}
    count = len(streams)
    flowing = sum(live.tokens_between(down_at, up_at) > 0 for live in streams)
    during = {
        name: sum(live.tokens_between(down_at, up_at) for live in group)
        for name, group in (("outlasting", long), ("ending", ending), ("late", late))
    }
    whole = sum(live.done is not None and live.done["status"] == "completed" and live.text == live.reply
                for live in streams)  # fmt: skip
    agreed = sum(live.saved_as_streamed(saved.get(live.user_id)) for live in streams)
    ended_inside = sum(bool(live.arrivals) and live.arrivals[-1] < up_at for live in ending)
    refused = sum(ok for ok, _ in probes)
    slowest = max(seconds for _, seconds in probes)
    figures.record(
        "Postgres stopped",
        f"Postgres stopped (fast shutdown) for {OUTAGE_S:.0f} s under {count} live streams on one "
        "process (outlasting the outage, ending during it, awaiting their first token): every stream "
        "receives tokens while Postgres is down and ends `completed` with its whole reply once it is "
        "back (question once, one usage row, Postgres agrees with `done`); every new request meanwhile "
        f"answers 503 problem+json with Retry-After within {REFUSE_WITHIN_S:.0f} s; requests succeed "
        "again without a restart",
        f"{flowing}/{count} streams received tokens while Postgres was down "
        f"({', '.join(f'{n} {name}' for name, n in during.items())}); "
        f"{ended_inside}/{per} replies ended during the outage; {whole}/{count} completed whole, "
        f"{agreed}/{count} saved as streamed with one usage row; {refused}/{len(probes)} new requests "
        f"answered 503 with Retry-After (slowest {slowest:.2f} s), /ready {ready.status_code}; served "
        f"again {recovered_s:.1f} s after Postgres answered again, "
        + ("same process" if same_process else "PROCESS CHANGED"),
    )
    assert flowing == count
    assert whole == count
    assert agreed == count
    assert refused == len(probes)
    assert slowest < REFUSE_WITHIN_S
    assert ready.status_code == 503
    assert same_process


async def _waiting_on_locks(watcher: asyncpg.Connection) -> int:
    found: int = await watcher.fetchval(WAITING_ON_LOCKS)
    return found


@pytest.mark.case("pool exhaustion")
async def test_a_held_pool_answers_503_at_the_acquire_timeout_then_serves_again(
    faults_database_url: str, server: Server, upstream: FakeOpenAI, http: httpx.AsyncClient, figures: Figures
) -> None:
    probes, after = scale(5, 20), scale(10, 100)
    upstream.behaviour = Behaviour(reply=words("pool", 5))
    holders = [f"holder-{uuid.uuid4().hex[:8]}" for _ in range(POOL_SIZE)]
    threads = [(await _chat(http, server, user)).json()["thread_id"] for user in holders]
    locker = await asyncpg.connect(faults_database_url, timeout=10)
    watcher = await asyncpg.connect(faults_database_url, timeout=10)
    try:
        # Every request to these threads waits on the row lock, holding a pooled connection.
        locked = locker.transaction()
        await locked.start()
        await locker.execute("SELECT 1 FROM threads WHERE id = ANY($1::uuid[]) FOR UPDATE", threads)
        held = [
            asyncio.create_task(_chat(http, server, user, thread_id=thread))
            for user, thread in zip(holders, threads, strict=True)
        ]
        await eventually(
            lambda: _waiting_on_locks(watcher), lambda n: n >= POOL_SIZE,
            what="every pooled connection waiting on the lock", within_s=30,
        )  # fmt: skip

        async def probe() -> tuple[httpx.Response, float]:
            sent = time.monotonic()
            response = await _chat(http, server, f"probe-{uuid.uuid4().hex[:8]}")
            return response, time.monotonic() - sent

        refusals = await asyncio.gather(*(probe() for _ in range(probes)))
        await locked.rollback()
    finally:
        await locker.close()  # ends the transaction, if a failure above left it open
        await watcher.close()
    released = await asyncio.gather(*held)
    gate = asyncio.Semaphore(POOL_SIZE)

    async def afterwards(index: int) -> httpx.Response:
        async with gate:
            return await _chat(http, server, f"after-{index}-{uuid.uuid4().hex[:8]}")

    later = await asyncio.gather(*(afterwards(i) for i in range(after)))
    refused = sum(refused_properly(response) for response, _ in refusals)
    waits = [seconds for _, seconds in refusals]
    retry_after = sorted({response.headers.get("retry-after") for response, _ in refusals}, key=str)
    completed = [r.status_code == 200 and r.json()["status"] == "completed" for r in (*released, *later)]
    errors = len(completed) - sum(completed)
    figures.record(
        "pool exhaustion",
        f"a pool of {POOL_SIZE} connections ({ACQUIRE_S:.0f} s acquire timeout), every one held by a "
        f"request waiting on a row lock: {probes} new requests answer 503 problem+json with Retry-After "
        f"at the acquire timeout (not later); once released, the held requests and {after} more "
        "complete: 0 errors",
        f"{refused}/{probes} answered 503 with Retry-After {', '.join(map(str, retry_after))} after "
        f"{min(waits):.1f}-{max(waits):.1f} s (median {statistics.median(waits):.1f} s); after release "
        f"{sum(completed[:POOL_SIZE])}/{POOL_SIZE} held and {sum(completed[POOL_SIZE:])}/{after} further "
        f"requests completed, {errors} errors",
    )
    assert refused == probes
    assert max(waits) < ACQUIRE_S + 10  # answered at the acquire timeout, not held for the lock
    assert errors == 0
