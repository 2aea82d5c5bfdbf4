"""A crash of every app process mid-reply: nothing lost, nothing duplicated, every reply kept as a prefix."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid

import asyncpg
import httpx
import pytest

from tests.conftest import JWT_SECRET
from tests.reliability.conftest import ORPHAN_WITHIN_S, Figures, scale
from tests.support.fake_openai import Behaviour, FakeOpenAI
from tests.support.processes import Server, SseStream, eventually, open_sse
from threadline.http.auth import issue_token

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]
TERMINAL = ("completed", "failed", "cancelled", "interrupted", "timeout")


async def _stream_until_killed(
    server: Server, user_id: str, message: str, kill: asyncio.Event, ready: list[str]
) -> SseStream:
    headers = {"Authorization": f"Bearer {issue_token(JWT_SECRET, user_id)}"}
    async with open_sse("POST", f"{server.url}/chat/stream", headers=headers, json={"message": message}) as s:
        assert s.status_code == 200, s.describe()
        # Five tokens 100 ms apart: past the 250 ms flush, so some of the reply is in Postgres.
        await s.read_tokens(5, within_s=60)
        ready.append(user_id)
        await kill.wait()
        with contextlib.suppress(httpx.HTTPError, AssertionError):
            await s.read_until(lambda _: False, what="the end of a dead stream", within_s=3)
    return s


@pytest.mark.case("kill -9 of both app processes")
async def test_kill_9_of_both_processes_loses_and_duplicates_nothing(
    servers: tuple[Server, Server], upstream: FakeOpenAI, db: asyncpg.Pool, figures: Figures
) -> None:
    a, b = servers
    count = scale(10, 50)
    reply = " ".join(f"crash{i}" for i in range(60))
    upstream.behaviour = Behaviour(reply=reply, gap_s=0.1)
    prefix = uuid.uuid4().hex[:8]
    ids = [f"crash-{prefix}-{i}" for i in range(count)]
    messages = {user_id: f"kill me {user_id}" for user_id in ids}
    kill, ready = asyncio.Event(), list[str]()
    readers = [
        asyncio.create_task(_stream_until_killed((a, b)[i % 2], user_id, messages[user_id], kill, ready))
        for i, user_id in enumerate(ids)
    ]

    async def mid_reply() -> int:
        return len(ready)

    await eventually(mid_reply, lambda n: n == count, what="every stream mid-reply", within_s=60)
    for server in (a, b):  # SIGKILL: neither gets to save or announce anything
        server.kill()
    killed_at = time.monotonic()
    kill.set()
    streams = await asyncio.gather(*readers)
    for server in (a, b):
        await asyncio.to_thread(server.start)
    for server in (a, b):
        await asyncio.to_thread(server.wait_ready)

    async def states() -> list[asyncpg.Record]:
        return await db.fetch(
            "SELECT r.user_id, r.status, m.content FROM runs r"
            " JOIN messages m ON m.id = r.assistant_message_id WHERE r.user_id = ANY($1)",
            ids,
        )

    rows = await eventually(
        states,
        lambda found: len(found) == count and all(row["status"] in TERMINAL for row in found),
        what="every run ended by the sweeper",
        within_s=ORPHAN_WITHIN_S + 30,
    )
    recovered_s = time.monotonic() - killed_at
    questions = await db.fetch(
        "SELECT user_id, count(*) AS n FROM messages"
        " WHERE user_id = ANY($1) AND role = 'user' GROUP BY user_id",
        ids,
    )
    per_user = {row["user_id"]: row["n"] for row in questions}
    lost = sum(per_user.get(user_id, 0) == 0 for user_id in ids)
    duplicated = sum(n > 1 for n in per_user.values())
    interrupted = sum(row["status"] == "interrupted" for row in rows)
    prefixes = sum(bool(row["content"]) and reply.startswith(row["content"]) for row in rows)
    received = sum(len(s.tokens) for s in streams)
    saved_chars = sum(len(row["content"]) for row in rows)
    figures.record(
        "kill -9 of both app processes",
        f"{count} streams mid-reply, SIGKILL to both processes, restart: every question once, every reply "
        "`interrupted` with a non-empty prefix of the upstream's reply, 0 lost, 0 duplicated",
        f"{count - lost}/{count} questions kept once, {lost} lost, {duplicated} duplicated; "
        f"{interrupted}/{count} interrupted, {prefixes}/{count} with a saved prefix ({saved_chars} chars "
        f"saved of {received} tokens received); all ended {recovered_s:.1f} s after the kill",
    )
    assert lost == 0
    assert duplicated == 0
    assert interrupted == count
    assert prefixes == count
