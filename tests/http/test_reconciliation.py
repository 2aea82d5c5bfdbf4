"""Every run is accounted for exactly once, whichever way it ends.

After runs that complete, fail before and during the reply, time out, are cancelled, are interrupted
by shutdown and are swept up after their process died, the usage rows add up to `user_usage` and to
the daily rollup the budgets read, the measured rows to what the upstream reported, and the estimated
rows to what the token counter computes from what was sent and received.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import pytest

from tests.conftest import AuthHeaders
from tests.support.accounting import (
    Client,
    app_client,
    in_threads,
    model_calls,
    new_threads,
    services_of,
    unique,
)
from tests.support.fake_openai import Behaviour, FakeOpenAI
from threadline.adapters.estimated_tokens import EstimatedTokens
from threadline.domain.models import RunStatus
from threadline.ports import NewTurn
from threadline.service.context import PER_MESSAGE_OVERHEAD

pytestmark = pytest.mark.timeout(120)
COLUMNS = ("prompt_tokens", "completion_tokens", "cached_tokens", "reasoning_tokens", "total_tokens")
COUNTER = EstimatedTokens()


@pytest.fixture(scope="module")
async def app(base_env: dict[str, str]) -> AsyncIterator[Client]:
    # A short idle timeout, so a stalled upstream ends the run as `timeout` within the test.
    async with app_client(base_env, THREADLINE_MODEL_IDLE_TIMEOUT="1", THREADLINE_RUN_LEASE_S="2") as client:
        yield client


def prompt_estimate(request: dict[str, Any]) -> int:
    """What the counter makes of a prompt the upstream received."""
    return sum(COUNTER.count(message["content"]) + PER_MESSAGE_OVERHEAD for message in request["messages"])


async def eventually(probe: Callable[[], Awaitable[Any]], what: str, within_s: float = 10.0) -> Any:
    deadline = asyncio.get_running_loop().time() + within_s
    while (found := await probe()) is None:
        assert asyncio.get_running_loop().time() < deadline, f"no {what} within {within_s} s"
        await asyncio.sleep(0.05)
    return found


async def test_usage_rows_rollups_and_upstream_agree_after_every_kind_of_ending(
    app: Client, auth: AuthHeaders, user: str, upstream: FakeOpenAI, db: asyncpg.Pool
) -> None:
    threads = iter(await new_threads(db, user, 10))
    questions: dict[str, str] = {}

    async def send(kind: str, behaviour: Behaviour, path: str = "/chat") -> dict[str, Any]:
        questions[kind] = unique(kind)
        upstream.behaviour = behaviour
        body = {"message": f"{questions[kind]} please", "thread_id": next(threads)}
        response = await app.post(path, json=body, headers=auth(user))
        assert response.status_code == 200, response.text
        return dict(response.json()) if path == "/chat" else {}

    # Two complete replies, measured by the upstream.
    await send("done1", Behaviour(reply="The first complete reply."))
    await send("done2", Behaviour(reply="A second one, a little longer than the first."))
    # A refusal before any text, and a connection lost mid-reply.
    await send("refused", Behaviour(fail_status=500, fail_times=1))
    await send("broken", Behaviour(reply="words that will be cut off here", reset_after=3))
    # A reply that stalls for longer than the idle timeout.
    stalled = await send("stalled", Behaviour(reply="slow words then silence", stall_after=2, stall_s=3))
    assert stalled["status"] == "timeout"

    async with in_threads(app) as post:
        # Cancelled by the user after a few tokens.
        questions["cancelled"] = unique("cancelled")
        upstream.behaviour = Behaviour(reply=" ".join(["word"] * 200), gap_s=0.05)
        pending = post("/chat", {"message": questions["cancelled"], "thread_id": next(threads)}, auth(user))
        run_id = await eventually(lambda: live_run_with_text(db, user), "a live run with text")
        assert (await app.post(f"/runs/{run_id}/cancel", headers=auth(user))).status_code == 200
        assert (await pending).json()["status"] == "cancelled"

        # Interrupted when its process shuts down (the drain's last resort).
        questions["shutdown"] = unique("shutdown")
        pending = post("/chat", {"message": questions["shutdown"], "thread_id": next(threads)}, auth(user))
        run_id = await eventually(lambda: live_run_with_text(db, user), "a live run with text")
        registry = services_of(app).registry
        await asyncio.to_thread(app.blocking_portal.call, registry.stop, run_id, RunStatus.INTERRUPTED)
        assert (await pending).json()["status"] == "interrupted"

    # Orphaned: its process died before calling the model; the sweeper settles it.
    questions["orphan"] = unique("orphan")
    services = services_of(app)
    orphan = NewTurn(
        user_id=user,
        thread_id=uuid.UUID(next(threads)),
        agent="default",
        content=questions["orphan"],
        client_message_id=None,
        request_fingerprint="-",
        metadata={},
        model="gpt-4o-mini",
        provider="openai",
        owner="a-process-that-died",
    )
    await asyncio.to_thread(app.blocking_portal.call, services.store.begin_turn, orphan)
    await db.execute(
        "UPDATE runs SET lease_expires_at = now() - interval '1 second' WHERE id = $1", orphan.run_id
    )
    await asyncio.to_thread(app.blocking_portal.call, services.keeper.sweep)

    rows = await db.fetch(
        """
        SELECT u.*, r.status AS run_status, m.content AS reply, q.content AS question
        FROM usage_events u
        JOIN runs r ON r.id = u.run_id
        JOIN messages m ON m.id = r.assistant_message_id
        JOIN messages q ON q.id = r.user_message_id
        WHERE u.user_id = $1
        """,
        user,
    )
    # One usage row per run, whichever way it ended.
    runs = await db.fetchval("SELECT count(*) FROM runs WHERE user_id = $1", user)
    assert len(rows) == runs == 8
    by_kind = {
        kind: next(row for row in rows if row["question"].startswith(q)) for kind, q in questions.items()
    }
    assert {kind: row["status"] for kind, row in by_kind.items()} == {
        "done1": "completed",
        "done2": "completed",
        "refused": "failed",
        "broken": "failed",
        "stalled": "timeout",
        "cancelled": "cancelled",
        "shutdown": "interrupted",
        "orphan": "interrupted",
    }
    assert all(row["status"] == row["run_status"] for row in rows)

    # Measured rows are exactly what the upstream billed.
    measured = [row for row in rows if row["source"] == "measured"]
    assert {row["status"] for row in measured} == {"completed"}
    for column in ("prompt_tokens", "completion_tokens", "total_tokens"):
        assert sum(row[column] for row in measured) == sum(usage[column] for usage in upstream.reported_usage)

    # Estimated rows are what the counter makes of what was sent and what came back.
    for kind in ("refused", "broken", "stalled", "cancelled", "shutdown"):
        row = by_kind[kind]
        assert row["source"] == "estimated"
        [sent] = model_calls(upstream, questions[kind])
        assert row["completion_tokens"] == COUNTER.count(row["reply"])
        # A prompt the model never answered was never billed.
        assert row["prompt_tokens"] == (prompt_estimate(sent) if row["reply"] else 0), kind
        assert row["total_tokens"] == row["prompt_tokens"] + row["completion_tokens"]
    assert all(by_kind[kind]["reply"] for kind in ("broken", "stalled", "cancelled", "shutdown"))
    assert by_kind["refused"]["total_tokens"] == 0
    orphan_row = by_kind["orphan"]
    assert model_calls(upstream, questions["orphan"]) == []
    assert orphan_row["prompt_tokens"] == COUNTER.count(questions["orphan"]) + PER_MESSAGE_OVERHEAD
    assert orphan_row["completion_tokens"] == 0

    # Every row is priced with the table's version; the rollups add up to the rows.
    assert {row["price_version"] for row in rows} == {services.accounting.prices.version}
    assert all(row["cost_usd"] is not None for row in rows)
    rollup = await db.fetchrow("SELECT * FROM user_usage WHERE user_id = $1", user)
    assert rollup is not None
    assert rollup["runs"] == len(rows)
    for column in COLUMNS:
        assert rollup[column] == sum(row[column] for row in rows), column
    assert rollup["cost_usd"] == sum(row["cost_usd"] for row in rows)
    daily = await db.fetchval("SELECT sum(total_tokens) FROM user_daily_tokens WHERE user_id = $1", user)
    assert daily == rollup["total_tokens"]
    assert await db.fetchval("SELECT count(*) FROM run_admissions WHERE user_id = $1", user) == 0


async def live_run_with_text(db: asyncpg.Pool, user: str) -> uuid.UUID | None:
    found: uuid.UUID | None = await db.fetchval(
        "SELECT id FROM runs WHERE user_id = $1 AND status = 'running' AND first_token_at IS NOT NULL", user
    )
    return found
