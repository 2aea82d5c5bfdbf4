"""A soak: steady traffic against one app process for a long time, its memory sampled throughout.

A few clients at a time, each in a loop: send and read the whole reply, send and drop after a few
tokens then resume with Last-Event-ID, send and cancel. Every run must end as its client expects,
and the process must come back to where it was: no run, stream, socket or task left over, and
(under `make reliability`) resident memory at the end within 5% of what it was after the warm-up.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg
import httpx
import msgspec
import psutil
import pytest

from tests.conftest import JWT_SECRET
from tests.reliability.conftest import FULL, Figures, app_env, scale
from tests.support.fake_openai import Behaviour, FakeOpenAI
from tests.support.processes import Server, eventually, open_sse
from threadline.http.auth import issue_token

# How long the traffic runs (TEST_SOAK_S overrides): the issue's 30 minutes under `make reliability`.
SOAK_S = float(os.environ.get("TEST_SOAK_S") or (1800 if FULL else 15))
# Memory after the warm-up (pools filled, caches and the allocator's arenas grown) is the baseline.
WARMUP_S = SOAK_S / 6 if FULL else SOAK_S / 3
# Each memory figure is the median of the samples in a window, so one busy moment does not decide it.
WINDOW_S = min(60.0, SOAK_S / 10)
SAMPLE_S = 5.0 if FULL else 0.5
MAX_DRIFT = 0.05
CLIENTS = scale(3, 4)
# Between two actions of a client: steady traffic, not a benchmark.
PAUSE_S = 0.2
# uvicorn's --timeout-keep-alive default, which the app processes of the suite run with.
UVICORN_KEEP_ALIVE_S = 5.0
REPLY = " ".join(f"soak{i}" for i in range(20))
TERMINAL = ("completed", "failed", "cancelled", "interrupted", "timeout")
GAUGES = ("threadline_active_runs", "threadline_sse_clients", "threadline_event_loop_tasks")

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(int(SOAK_S) + 300)]


class Sample(msgspec.Struct, frozen=True):
    at_s: float
    rss: int
    fds: int
    tasks: float


class Tally:
    """What the clients did and how each run ended, as they saw it."""

    def __init__(self) -> None:
        self.actions: Counter[str] = Counter()
        self.ended: Counter[str] = Counter()
        self.improper: list[str] = []
        self.run_ids: list[uuid.UUID] = []

    def improper_end(self, action: str, why: str) -> None:
        self.improper.append(f"{action}: {why}")


async def _gauges(http: httpx.AsyncClient, server: Server) -> dict[str, float]:
    text = (await http.get(f"{server.url}/metrics")).text
    found = dict.fromkeys(GAUGES, 0.0)
    for line in text.splitlines():
        name, _, number = line.partition(" ")
        if name in found:
            found[name] = float(number)
    return found


class Client:
    """One user sending into one thread, one action at a time, until the deadline."""

    def __init__(self, index: int, server: Server, http: httpx.AsyncClient, tally: Tally, user: str) -> None:
        self.index = index
        self.server = server
        self.http = http
        self.tally = tally
        self.headers = {"Authorization": f"Bearer {issue_token(JWT_SECRET, user)}"}
        self.thread_id: str | None = None

    async def loop(self, deadline: float) -> None:
        actions: list[Callable[[int], Awaitable[None]]] = [self.send, self.resume, self.cancel]
        turn = 0
        while time.monotonic() < deadline:
            action = actions[(self.index + turn) % len(actions)]
            name = action.__name__
            self.tally.actions[name] += 1
            try:
                await action(turn)
            except (AssertionError, httpx.HTTPError) as error:
                self.tally.improper_end(name, repr(error)[:300])
            turn += 1
            await asyncio.sleep(PAUSE_S)

    def _body(self, turn: int) -> dict[str, object]:
        body: dict[str, object] = {"message": f"soak turn {turn} of client {self.index}"}
        if self.thread_id is not None:
            body["thread_id"] = self.thread_id
        return body

    def _started(self, start: dict[str, object]) -> None:
        self.thread_id = str(start["thread_id"])
        self.tally.run_ids.append(uuid.UUID(str(start["run_id"])))

    async def send(self, turn: int) -> None:
        async with open_sse(
            "POST", f"{self.server.url}/chat/stream", headers=self.headers, json=self._body(turn)
        ) as stream:
            assert stream.status_code == 200, stream.describe()
            done = await stream.read_to_done(within_s=30)
        self._started(stream.first("start"))
        self._check("send", done["status"], stream.text, expected=("completed",))

    async def resume(self, turn: int) -> None:
        async with open_sse(
            "POST", f"{self.server.url}/chat/stream", headers=self.headers, json=self._body(turn)
        ) as first:
            assert first.status_code == 200, first.describe()
            await first.read_tokens(2 + turn % 5, within_s=30)
        start = first.first("start")
        self._started(start)
        headers = {**self.headers, "Last-Event-ID": str(first.last_id)}
        url = f"{self.server.url}/runs/{start['run_id']}/stream"
        async with open_sse("GET", url, headers=headers) as rest:
            assert rest.status_code == 200, rest.describe()
            done = await rest.read_to_done(within_s=30)
        self._check("resume", done["status"], first.text + rest.text, expected=("completed",))

    async def cancel(self, turn: int) -> None:
        async with open_sse(
            "POST", f"{self.server.url}/chat/stream", headers=self.headers, json=self._body(turn)
        ) as stream:
            assert stream.status_code == 200, stream.describe()
            await stream.read_tokens(3, within_s=30)
            start = stream.first("start")
            self._started(start)
            url = f"{self.server.url}/runs/{start['run_id']}/cancel"
            cancelled = await self.http.post(url, headers=self.headers)
            assert cancelled.status_code == 200, cancelled.text
            done = await stream.read_to_done(within_s=30)
        # A reply that finished before the cancel reached it is a proper end too.
        self._check("cancel", done["status"], stream.text, expected=("cancelled", "completed"))

    def _check(self, action: str, status: str, text: str, *, expected: tuple[str, ...]) -> None:
        self.tally.ended[status] += 1
        if status not in expected:
            self.tally.improper_end(action, f"ended {status}")
        elif status == "completed" and text != REPLY:
            self.tally.improper_end(action, f"completed with {text[:80]!r}")
        elif status == "cancelled" and not REPLY.startswith(text):
            self.tally.improper_end(action, f"cancelled with {text[:80]!r}, not a prefix of the reply")


def _window(samples: list[Sample], end_s: float) -> list[Sample]:
    return [s for s in samples if end_s - WINDOW_S <= s.at_s <= end_s] or samples[-1:]


def _mb(rss: float) -> str:
    return f"{rss / 2**20:.1f} MB"


@pytest.mark.case("soak")
async def test_steady_traffic_leaves_nothing_behind_and_memory_flat(
    database_url: str,
    redis_url: str,
    upstream: FakeOpenAI,
    db: asyncpg.Pool,
    tmp_path: Path,
    figures: Figures,
) -> None:
    upstream.behaviour = Behaviour(reply=REPLY, gap_s=0.03)
    server = Server(
        "soak", env=app_env(tmp_path / "soak", database_url, redis_url, upstream), log_dir=tmp_path
    )
    server.start()
    try:
        await asyncio.to_thread(server.wait_ready)
        process = psutil.Process(server.pid)
        # uvicorn closes a connection idle for 5 s; a client that reuses it at that moment gets no
        # response (httpx keeps idle connections 5 s too). The first 30-minute soak lost 3 of 1,942
        # cancels that way: a client of uvicorn lets its idle connections go first.
        limits = httpx.Limits(keepalive_expiry=UVICORN_KEEP_ALIVE_S / 2)
        async with httpx.AsyncClient(timeout=30.0, limits=limits) as http:
            await _soak(server, process, http, db, figures)
    finally:
        server.terminate()


async def _soak(
    server: Server, process: psutil.Process, http: httpx.AsyncClient, db: asyncpg.Pool, figures: Figures
) -> None:
    def client_sockets() -> int:
        return sum(
            c.laddr.port == server.port and c.status != psutil.CONN_LISTEN for c in process.net_connections()
        )

    # One run first: the job queue and the pools start lazily, and belong to the process, not to a leak.
    prefix = uuid.uuid4().hex[:8]
    users = [f"soak-{prefix}-{i}" for i in range(CLIENTS)]
    await Client(0, server, http, Tally(), users[0]).send(0)
    await asyncio.sleep(0.5)
    tasks_idle = max([(await _gauges(http, server))["threadline_event_loop_tasks"] for _ in range(5)])
    sockets_idle = client_sockets()

    tally = Tally()
    samples: list[Sample] = []
    started = time.monotonic()
    deadline = started + SOAK_S

    async def sample() -> None:
        while time.monotonic() < deadline:
            memory = process.memory_info()
            tasks = (await _gauges(http, server))["threadline_event_loop_tasks"]
            samples.append(Sample(time.monotonic() - started, memory.rss, process.num_fds(), tasks))
            await asyncio.sleep(SAMPLE_S)

    clients = [Client(i, server, http, tally, user) for i, user in enumerate(users)]
    await asyncio.gather(sample(), *(client.loop(deadline) for client in clients))

    async def settled() -> dict[str, float]:
        return {**(await _gauges(http, server)), "client_sockets": client_sockets()}

    def at_rest(found: dict[str, float]) -> bool:
        return (
            found["threadline_active_runs"] == 0
            and found["threadline_sse_clients"] == 0
            and found["threadline_event_loop_tasks"] <= tasks_idle
            and found["client_sockets"] <= sockets_idle
        )

    rest = await eventually(settled, at_rest, what="the process back at rest", within_s=30, every_s=0.5)
    rows = await db.fetch(
        "SELECT r.id, r.status, count(u.id) AS usage_rows FROM runs r"
        " LEFT JOIN usage_events u ON u.run_id = r.id WHERE r.user_id = ANY($1) GROUP BY r.id, r.status",
        users,
    )
    unended = sum(row["status"] not in TERMINAL for row in rows)
    usage_wrong = sum(row["usage_rows"] != 1 for row in rows)
    runs = len(tally.run_ids)

    warm = statistics.median(s.rss for s in _window(samples, WARMUP_S))
    end = statistics.median(s.rss for s in _window(samples, samples[-1].at_s))
    drift = (end - warm) / warm
    fds_warm = statistics.median(s.fds for s in _window(samples, WARMUP_S))
    fds_end = statistics.median(s.fds for s in _window(samples, samples[-1].at_s))
    peak = max(s.rss for s in samples)
    minutes = SOAK_S / 60
    criterion = (
        f"{CLIENTS} clients for {minutes:.0f} min (send, drop and resume, cancel): every run ended as "
        "expected with one usage row; runs, SSE clients, sockets and loop tasks back to rest; resident "
        f"memory at the end within {MAX_DRIFT:.0%} of the end of a {WARMUP_S / 60:.0f}-minute warm-up"
        if FULL
        else f"{CLIENTS} clients for {SOAK_S:.0f} s: every run ended as expected with one usage row; runs, "
        "SSE clients, sockets and loop tasks back to rest (memory drift printed, not judged: too short)"
    )
    figures.record(
        "soak",
        criterion,
        f"{runs} runs ({dict(tally.actions)}), ended {dict(tally.ended)}, {len(tally.improper)} improper, "
        f"{unended} not ended, {usage_wrong} without exactly one usage row; RSS {_mb(warm)} after the "
        f"warm-up → {_mb(end)} at the end ({drift:+.1%}; peak {_mb(peak)}; {len(samples)} samples); open "
        f"fds {fds_warm:.0f} → {fds_end:.0f}; at rest: {rest} (loop tasks idle before: {tasks_idle:.0f})",
    )
    assert tally.improper == [], tally.improper[:5]
    assert len(rows) == runs + 1  # and the warming run
    assert unended == 0
    assert usage_wrong == 0
    if FULL:
        assert drift < MAX_DRIFT
