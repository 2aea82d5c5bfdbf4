"""Load faults: hundreds of clients vanishing at once, and clients resuming on either process."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from typing import Any

import asyncpg
import httpx
import psutil
import pytest

from tests.conftest import JWT_SECRET
from tests.reliability.conftest import Figures, scale
from tests.reliability.raw_sse import RawStream
from tests.support.fake_openai import Behaviour, FakeOpenAI
from tests.support.processes import Server, SseStream, eventually, open_sse
from threadline.http.auth import issue_token

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]
TERMINAL = ("completed", "failed", "cancelled", "interrupted", "timeout")


def words(tag: str, count: int) -> str:
    return " ".join(f"{tag}{i}" for i in range(count))


def users(count: int) -> list[str]:
    prefix = uuid.uuid4().hex[:8]
    return [f"storm-{prefix}-{i}" for i in range(count)]


async def gauges(http: httpx.AsyncClient, server: Server) -> dict[str, float]:
    """Threadline's live gauges from /metrics (runs executing, SSE responses streaming)."""
    text = (await http.get(f"{server.url}/metrics")).text
    found: dict[str, float] = {}
    for line in text.splitlines():
        for name in ("threadline_active_runs", "threadline_sse_clients"):
            if line.startswith((name + " ", name + "{")):
                found[name] = found.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    return found


async def _one_token_in(server: Server, user_id: str, refused: list[int]) -> RawStream:
    """A stream one token into its reply; a 503 (the pool is busy) is retried after its Retry-After."""
    for _ in range(20):
        # The same client_message_id: a retry of a request that got as far as a run replays that run.
        body = {"message": "storm", "client_message_id": f"storm-{user_id}"}
        stream = await RawStream.open(server.port, issue_token(JWT_SECRET, user_id), body)
        try:
            await stream.read_tokens(1, within_s=60)
        except ConnectionError:
            stream.abort()
            if stream.status != 503:
                raise
            refused.append(503)
            await asyncio.sleep(1.0)
            continue
        except BaseException:
            stream.abort()
            raise
        return stream
    raise AssertionError(f"{user_id}: refused 20 times")


async def runs_of(db: asyncpg.Pool, user_ids: list[str]) -> list[asyncpg.Record]:
    return await db.fetch(
        "SELECT r.id, r.user_id, r.status, m.content FROM runs r"
        " JOIN messages m ON m.id = r.assistant_message_id WHERE r.user_id = ANY($1)",
        user_ids,
    )


@pytest.mark.case("disconnect storm")
async def test_a_disconnect_storm_finishes_and_saves_every_run(
    servers: tuple[Server, Server], upstream: FakeOpenAI, db: asyncpg.Pool, http: httpx.AsyncClient,
    figures: Figures,
) -> None:  # fmt: skip
    a, _ = servers
    count = scale(40, 300)
    reply = words("storm", 20)
    upstream.behaviour = Behaviour(reply=reply, gap_s=0.1)
    process = psutil.Process(a.pid)

    def client_sockets() -> int:
        """Sockets of clients on the server's port: each left open is a response still being served."""
        found = process.net_connections()
        return sum(c.laddr.port == a.port and c.status != psutil.CONN_LISTEN for c in found)

    gauges_before = await gauges(http, a)  # first: its keep-alive connection is part of the baseline
    sockets_before = client_sockets()
    ids = users(count)
    refused: list[int] = []
    streams = await asyncio.gather(*(_one_token_in(a, user_id, refused) for user_id in ids))
    sockets_peak = client_sockets()
    closed_at = time.monotonic()
    for stream in streams:
        stream.abort()

    def all_ended(rows: list[asyncpg.Record]) -> bool:
        return len(rows) == count and all(row["status"] in TERMINAL for row in rows)

    rows = await eventually(lambda: runs_of(db, ids), all_ended, what="every run ending", within_s=60)
    saved_s = time.monotonic() - closed_at
    completed = sum(row["status"] == "completed" for row in rows)
    statuses = dict(Counter(row["status"] for row in rows))
    whole = sum(row["content"] == reply for row in rows)

    async def settled() -> tuple[int, dict[str, float]]:
        return client_sockets(), await gauges(http, a)

    def at_baseline(found: tuple[int, dict[str, float]]) -> bool:
        sockets, live = found
        return sockets <= sockets_before and all(live.get(k, 0.0) <= v for k, v in gauges_before.items())

    sockets_after, live_after = await eventually(settled, at_baseline, what="back to baseline", within_s=20)
    figures.record(
        "disconnect storm",
        f"{count} sockets reset at once: every run completed with its whole reply saved; client sockets "
        "and the live-runs and SSE-clients gauges back to their baseline",
        f"{completed}/{count} completed, {whole}/{count} whole replies saved {saved_s:.1f} s after the "
        f"storm ({len(refused)} requests answered 503 while the storm opened and were retried); "
        f"statuses {statuses}; client sockets {sockets_before} → {sockets_peak} → {sockets_after}; "
        f"gauges {live_after}",
    )
    assert completed == count
    assert whole == count


async def _drop_and_resume(
    index: int, a: Server, b: Server, user_id: str, http: httpx.AsyncClient
) -> tuple[bool, str]:
    headers = {"Authorization": f"Bearer {issue_token(JWT_SECRET, user_id)}"}
    async with open_sse("POST", f"{a.url}/chat/stream", headers=headers, json={"message": "resume"}) as first:
        assert first.status_code == 200, first.describe()
        await first.read_tokens(3 + index % 7, within_s=60)
    run_id = first.first("start")["run_id"]
    again = a if index % 2 == 0 else b
    resumed_headers = {**headers, "Last-Event-ID": str(first.last_id)}
    async with open_sse("GET", f"{again.url}/runs/{run_id}/stream", headers=resumed_headers) as rest:
        assert rest.status_code == 200, rest.describe()
        await rest.read_to_done(within_s=60)
    other = b if again is a else a
    async with open_sse("GET", f"{other.url}/runs/{run_id}/stream", headers=headers) as full:
        await full.read_to_done(within_s=30)
    identical = first.frames + rest.frames == full.frames
    return identical, "" if identical else _difference(first, rest, full)


def _difference(first: SseStream, rest: SseStream, full: SseStream) -> str:
    joined: list[Any] = first.frames + rest.frames
    for i, (got, want) in enumerate(zip(joined, full.frames, strict=False)):
        if got != want:
            return f"frame {i}: {got[:120]!r} != {want[:120]!r}"
    return f"{len(joined)} frames vs {len(full.frames)}"


@pytest.mark.case("resume storm")
async def test_a_resume_storm_on_both_processes_is_byte_identical(
    servers: tuple[Server, Server], upstream: FakeOpenAI, http: httpx.AsyncClient, figures: Figures
) -> None:
    a, b = servers
    count = scale(20, 100)
    upstream.behaviour = Behaviour(reply=words("resume", 30), gap_s=0.05)
    outcomes = await asyncio.gather(
        *(_drop_and_resume(i, a, b, user_id, http) for i, user_id in enumerate(users(count)))
    )
    identical = sum(ok for ok, _ in outcomes)
    figures.record(
        "resume storm",
        f"{count} clients drop after 3-9 tokens and resume with Last-Event-ID, half on the other process: "
        "100% byte-identical to a full replay",
        f"{identical}/{count} byte-identical ({identical / count:.0%})",
    )
    assert identical == count, [why for ok, why in outcomes if not ok][:3]
