"""Runs that end early: the upstream failing before or during a reply, and cancels from the other process.

Every case runs on two real processes (A and B) against the fake upstream, each run streaming from
one of them, and checks what the client saw against what Postgres kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import asyncpg
import httpx
import pytest

from tests.conftest import JWT_SECRET
from tests.reliability.conftest import FULL, Figures, app_env, scale, start_pair, stop_pair
from tests.support.fake_openai import Behaviour, FakeOpenAI, split_tokens
from tests.support.processes import Server, SseBlock, SseStream, open_sse
from threadline.http.auth import issue_token

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(400)]
# The model idle timeout: the default (120 s) under `make reliability`, 3 s in `make test`.
IDLE_TIMEOUT_S = 120.0 if FULL else 3.0
# How long the upstream goes silent mid-reply: longer than the idle timeout, so Threadline gives up first.
STALL_S = IDLE_TIMEOUT_S + 10
REPLY = " ".join(f"fault{i}" for i in range(40))
GAP_S = 0.02
BROKEN, STALLED = "upstream_stream_error", "upstream_stalled"
RUNS_OF = """
    SELECT r.user_id, r.status, r.error, m.content, m.status AS message_status,
           (SELECT count(*) FROM messages q WHERE q.user_id = r.user_id AND q.role = 'user') AS questions,
           (SELECT count(*) FROM usage_events u WHERE u.run_id = r.id) AS usage_rows
    FROM runs r JOIN messages m ON m.id = r.assistant_message_id
    WHERE r.user_id = ANY($1)
"""


@pytest.fixture(scope="module")
def run_pair(
    database_url: str, redis_url: str, upstream: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Server, Server]]:
    """Processes A and B on the session's Postgres, Redis and fake upstream, with the idle timeout above."""
    root = tmp_path_factory.mktemp("run-faults")
    idle = {"THREADLINE_MODEL_IDLE_TIMEOUT": str(IDLE_TIMEOUT_S)}
    envs = {name: app_env(root / name, database_url, redis_url, upstream, **idle) for name in ("A", "B")}
    a, b = start_pair(root, envs)
    try:
        yield a, b
    finally:
        stop_pair(a, b)


def headers(user_id: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(JWT_SECRET, user_id)}"}


def users(tag: str, count: int) -> list[str]:
    prefix = f"{tag}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    return [f"{prefix}-{i}" for i in range(count)]


async def saved_runs(db: asyncpg.Pool, user_ids: list[str]) -> dict[str, asyncpg.Record]:
    """Each user's run as Postgres has it: status, error, reply, message status, questions, usage rows."""
    rows = await db.fetch(RUNS_OF, user_ids)
    return {row["user_id"]: row for row in rows}


def heartbeats_after_last_token(stream: SseStream) -> int:
    last = max((i for i, block in enumerate(stream.blocks) if block.type == "token"), default=-1)
    return sum(block.data is None and bool(block.comments) for block in stream.blocks[last + 1 :])


@dataclass(frozen=True)
class Fault:
    """An upstream fault, and how a run that meets it must end."""

    behaviour: Behaviour
    tokens: int  # content chunks the client receives before the fault
    code: str  # the `error` event's code
    status: str  # the run's status in `done` and in Postgres


FAULTS = [
    pytest.param(
        Fault(Behaviour(reply=REPLY, fail_status=429, retry_after_s=1), 0, "upstream_429", "failed"),
        marks=pytest.mark.case("upstream 429 before the stream"),
        id="429",
    ),
    pytest.param(
        Fault(Behaviour(reply=REPLY, fail_status=500), 0, "upstream_500", "failed"),
        marks=pytest.mark.case("upstream 500 before the stream"),
        id="500",
    ),
    pytest.param(
        Fault(Behaviour(reply=REPLY, gap_s=GAP_S, reset_after=20), 20, BROKEN, "failed"),
        marks=pytest.mark.case("upstream reset after 20 tokens"),
        id="reset",
    ),
    pytest.param(
        Fault(Behaviour(reply=REPLY, gap_s=GAP_S, malformed_after=10), 10, BROKEN, "failed"),
        marks=pytest.mark.case("upstream malformed chunk"),
        id="malformed",
    ),
    pytest.param(
        Fault(Behaviour(reply=REPLY, gap_s=GAP_S, stall_after=5, stall_s=STALL_S), 5, STALLED, "timeout"),
        marks=pytest.mark.case("upstream stall"),
        id="stall",
    ),
]


async def _meet_fault(server: Server, user_id: str) -> tuple[SseStream, float]:
    """A stream read to its end, and how long the client waited after its last token."""
    async with open_sse(
        "POST", f"{server.url}/chat/stream", headers=headers(user_id), json={"message": f"fault {user_id}"}
    ) as stream:
        assert stream.status_code == 200, stream.describe()
        last_token = time.monotonic()

        def arrived(block: SseBlock) -> bool:
            nonlocal last_token
            if block.type == "token":
                last_token = time.monotonic()
            return block.type == "done"

        await stream.read_until(arrived, what="a `done` event", within_s=STALL_S + 60)
        return stream, time.monotonic() - last_token


@pytest.mark.parametrize("fault", FAULTS)
async def test_an_upstream_fault_ends_the_run_with_a_clear_status_and_keeps_what_was_said(
    run_pair: tuple[Server, Server], upstream: FakeOpenAI, db: asyncpg.Pool, figures: Figures,
    request: pytest.FixtureRequest, fault: Fault,
) -> None:  # fmt: skip
    marker = request.node.get_closest_marker("case")
    assert marker is not None
    case = str(marker.args[0])
    count = scale(4, 20)
    upstream.behaviour = fault.behaviour
    ids = users("fault", count)
    ended = await asyncio.gather(*(_meet_fault(run_pair[i % 2], user) for i, user in enumerate(ids)))
    streams = [stream for stream, _ in ended]
    saved = await saved_runs(db, ids)
    prefix = "".join(split_tokens(REPLY)[: fault.tokens])
    errors = [s.first("error") if any(e.type == "error" for e in s.events) else {} for s in streams]
    clear = sum(
        s.done is not None and s.done["status"] == fault.status and error.get("code") == fault.code
        and bool(error.get("message")) and s.text == prefix
        for s, error in zip(streams, errors, strict=True)
    )  # fmt: skip
    kept = sum(
        user in saved and saved[user]["questions"] == 1 and saved[user]["status"] == fault.status
        and saved[user]["content"] == prefix and saved[user]["message_status"] == "failed"
        and str(saved[user]["error"]).startswith(fault.code)
        for user in ids
    )  # fmt: skip
    usage_rows = sum(user in saved and saved[user]["usage_rows"] == 1 for user in ids)
    model_calls = len(upstream.requests)
    waits = [waited for _, waited in ended]
    heartbeats = [heartbeats_after_last_token(s) for s in streams]
    criterion = (
        f"{count} runs, half on A and half on B, meet it: each client gets {fault.tokens} tokens, an "
        f"`error` `{fault.code}` and `done` `{fault.status}`; Postgres keeps the question once, the run "
        f"`{fault.status}` with those {fault.tokens} tokens as its reply, and one usage row; one model "
        "call per run (no silent retry)"
    )
    measured = (
        f"{clear}/{count} clients got {fault.tokens} tokens, `{fault.code}` and `{fault.status}`; "
        f"{kept}/{count} saved that way with the question once; {usage_rows}/{count} with one usage "
        f"row; {model_calls} model calls"
    )
    if fault.code == STALLED:
        criterion += f"; heartbeats flow through the silence ({IDLE_TIMEOUT_S:.0f} s idle timeout)"
        measured += (
            f"; the silence lasted {min(waits):.1f}-{max(waits):.1f} s with "
            f"{min(heartbeats)}-{max(heartbeats)} heartbeats in it"
        )
    figures.record(case, criterion, measured)
    assert clear == count, [s.describe() for s in streams]
    assert kept == count
    assert usage_rows == count
    assert model_calls == count
    if fault.code == STALLED:
        assert min(heartbeats) >= 1


async def _stream_until_cancelled(a: Server, user_id: str, under_way: asyncio.Event) -> SseStream:
    async with open_sse(
        "POST", f"{a.url}/chat/stream", headers=headers(user_id), json={"message": f"cancel {user_id}"}
    ) as stream:
        assert stream.status_code == 200, stream.describe()
        await stream.read_tokens(3, within_s=60)
        under_way.set()
        await stream.read_to_done(within_s=60)
        return stream


async def _cancel_from(
    b: Server, http: httpx.AsyncClient, user_id: str, run_id: str
) -> tuple[httpx.Response, float]:
    sent = time.monotonic()
    response = await http.post(f"{b.url}/runs/{run_id}/cancel", headers=headers(user_id))
    return response, time.monotonic() - sent


@pytest.mark.case("cancel from the other process under load")
async def test_cancels_from_the_other_process_under_load_end_every_run_cancelled(
    run_pair: tuple[Server, Server], upstream: FakeOpenAI, db: asyncpg.Pool, http: httpx.AsyncClient,
    figures: Figures,
) -> None:  # fmt: skip
    a, b = run_pair
    count = scale(10, 50)
    reply = " ".join(f"cancel{i}" for i in range(400))  # 20 s of reply: only a cancel ends it in time
    upstream.behaviour = Behaviour(reply=reply, gap_s=0.05)
    ids = users("cancel", count)
    under_way = [asyncio.Event() for _ in ids]
    readers = [
        asyncio.create_task(_stream_until_cancelled(a, user, ready))
        for user, ready in zip(ids, under_way, strict=True)
    ]
    async with asyncio.timeout(60):
        await asyncio.gather(*(ready.wait() for ready in under_way))
    # Every run is on A, live; each is cancelled through B, all at once.
    run_ids = [str(await db.fetchval("SELECT id FROM runs WHERE user_id = $1", user)) for user in ids]
    cancelled_at = time.monotonic()
    answers = await asyncio.gather(
        *(_cancel_from(b, http, user, run) for user, run in zip(ids, run_ids, strict=True))
    )
    streams = await asyncio.gather(*readers)
    all_done_s = time.monotonic() - cancelled_at
    saved = await saved_runs(db, ids)
    answered = sum(r.status_code == 200 and r.json()["status"] == "cancelled" for r, _ in answers)
    announced = sum(s.done is not None and s.done["status"] == "cancelled" for s in streams)
    prefixes = sum(
        user in saved and saved[user]["status"] == "cancelled" and bool(saved[user]["content"])
        and reply.startswith(saved[user]["content"]) and saved[user]["content"].startswith(s.text)
        for user, s in zip(ids, streams, strict=True)
    )  # fmt: skip
    usage_rows = sum(user in saved and saved[user]["usage_rows"] == 1 for user in ids)
    waits = sorted(seconds for _, seconds in answers)
    saved_tokens = sum(len(split_tokens(saved[user]["content"])) for user in ids if user in saved)
    with contextlib.suppress(TimeoutError):  # counted below
        await upstream.wait_for(lambda: upstream.disconnects >= count, timeout=10)
    stopped = upstream.disconnects
    figures.record(
        "cancel from the other process under load",
        f"{count} streams live on A, each cancelled through B's `POST /runs/{{id}}/cancel` at once: every "
        "cancel answers `cancelled` (the run ended within the cancel's wait), every stream on A ends "
        "`done` `cancelled`, Postgres keeps a non-empty prefix of the reply (all the client saw) and one "
        "usage row per run, and the model call is stopped",
        f"{answered}/{count} cancels answered `cancelled` (median {statistics.median(waits):.2f} s, slowest "
        f"{waits[-1]:.2f} s); {announced}/{count} streams ended `cancelled`, all within {all_done_s:.1f} s; "
        f"{prefixes}/{count} prefixes saved ({saved_tokens} tokens of {count * len(split_tokens(reply))}); "
        f"{usage_rows}/{count} with one usage row; {stopped}/{count} model calls stopped",
    )
    assert answered == count
    assert announced == count
    assert prefixes == count
    assert usage_rows == count
    assert stopped == count
