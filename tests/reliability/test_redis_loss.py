"""Redis killed and restarted empty mid-reply: live streams go on, resumes fall back to Postgres."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import JWT_SECRET
from tests.reliability.conftest import Figures, app_env, scale, start_pair, stop_pair
from tests.support.fake_openai import Behaviour, FakeOpenAI
from tests.support.processes import Server, SseStream, open_sse
from threadline.embedded import EmbeddedRedis
from threadline.http.auth import issue_token

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


class KillableRedis:
    """A redis-server of this module's own, so killing it touches no other test."""

    def __init__(self) -> None:
        self.data_dir = Path(tempfile.mkdtemp(prefix="threadline-redis-loss-"))
        self.server = EmbeddedRedis(self.data_dir)
        self.url = self.server.start()

    def kill(self) -> None:
        assert self.server.pid is not None
        os.kill(self.server.pid, signal.SIGKILL)
        self.server.stop()  # reaps it; SIGKILL already ended it

    def restart_empty(self) -> None:
        # Nothing is persisted (no AOF, no RDB): it comes back with no keys at the same socket.
        assert self.server.start() == self.url


@pytest.fixture(scope="module")
def redis_server() -> Iterator[KillableRedis]:
    redis = KillableRedis()
    try:
        yield redis
    finally:
        redis.server.stop()


@pytest.fixture(scope="module")
def own_pair(
    redis_server: KillableRedis,
    database_url: str,
    upstream: FakeOpenAI,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Server, Server]]:
    root = tmp_path_factory.mktemp("redis-loss")
    envs = {name: app_env(root / name, database_url, redis_server.url, upstream) for name in ("A", "B")}
    a, b = start_pair(root, envs)
    try:
        yield a, b
    finally:
        stop_pair(a, b)


def words(tag: str, count: int) -> str:
    return " ".join(f"{tag}{i}" for i in range(count))


async def _live(a: Server, token: str, mid: asyncio.Event, lost: asyncio.Event) -> SseStream:
    headers = {"Authorization": f"Bearer {token}"}
    async with open_sse("POST", f"{a.url}/chat/stream", headers=headers, json={"message": "hold on"}) as s:
        assert s.status_code == 200, s.describe()
        await s.read_tokens(5, within_s=60)
        mid.set()
        await lost.wait()
        with contextlib.suppress(AssertionError):
            await s.read_to_done(within_s=60)
    return s


async def _resume_elsewhere(b: Server, token: str, stream: SseStream) -> SseStream:
    """Resume from the sixth event on, on the process that never had the run: only Postgres has it now."""
    events = stream.events
    headers = {"Authorization": f"Bearer {token}", "Last-Event-ID": str(events[5].id)}
    run_id = stream.first("start")["run_id"]
    async with open_sse("GET", f"{b.url}/runs/{run_id}/stream", headers=headers) as rest:
        with contextlib.suppress(AssertionError):
            await rest.read_to_done(within_s=30)
    return rest


@pytest.mark.case("Redis killed and restarted empty")
async def test_streams_survive_redis_restarting_empty(
    own_pair: tuple[Server, Server], redis_server: KillableRedis, upstream: FakeOpenAI, figures: Figures
) -> None:
    a, b = own_pair
    count = scale(5, 20)
    reply = words("redis", 40)
    upstream.behaviour = Behaviour(reply=reply, gap_s=0.1)
    tokens = [issue_token(JWT_SECRET, f"redis-loss-{os.getpid()}-{i}") for i in range(count)]
    mids = [asyncio.Event() for _ in range(count)]
    lost = asyncio.Event()
    live = [asyncio.create_task(_live(a, token, mid, lost)) for token, mid in zip(tokens, mids, strict=True)]
    async with asyncio.timeout(60):
        await asyncio.gather(*(mid.wait() for mid in mids))
    await asyncio.to_thread(redis_server.kill)
    await asyncio.sleep(1.0)
    await asyncio.to_thread(redis_server.restart_empty)
    lost.set()
    streams = await asyncio.gather(*live)
    flowed = sum(s.done is not None and s.done["status"] == "completed" and s.text == reply for s in streams)
    rests = await asyncio.gather(*(_resume_elsewhere(b, t, s) for t, s in zip(tokens, streams, strict=True)))
    head = [s.events[1:6] for s in streams]  # the five tokens before the resume point
    resumed = sum(
        r.done is not None and "".join(str(e.data["content"]) for e in h if e.data) + r.text == reply
        for r, h in zip(rests, head, strict=True)
    )
    async with open_sse(
        "POST",
        f"{a.url}/chat/stream",
        headers={"Authorization": f"Bearer {tokens[0]}"},
        json={"message": "again"},
    ) as after:
        done = await after.read_to_done(within_s=30) if after.status_code == 200 else {}
    figures.record(
        "Redis killed and restarted empty",
        f"{count} live streams when redis-server gets SIGKILL and comes back empty 1 s later: every live "
        "stream completes whole; a resume on the other process is rebuilt from Postgres; new requests work",
        f"{flowed}/{count} live streams completed whole, {resumed}/{count} resumes on B correct from "
        f"Postgres, a new request afterwards: HTTP {after.status_code} {done.get('status')}",
    )
    assert flowed == count
    assert resumed == count
    assert done.get("status") == "completed"
