"""The job queue's own upkeep, and what the app's worker runs."""

from __future__ import annotations

import asyncpg
from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.support.sessions import in_app, sessions_of
from threadline.db.titles import TITLE_JOB
from threadline.jobs import ABANDON_JOB, PRUNE_JOB, PURGE_JOB

Client = AsyncTestClient[Litestar]
INSERT_LOG = """
    INSERT INTO pgqueuer_log (created, job_id, status, priority, entrypoint, aggregated)
    VALUES (now() - make_interval(days => $1), $2, 'successful', 0, 'test_entrypoint', $3)
"""


async def test_the_worker_runs_the_session_jobs(client: Client) -> None:
    assert {TITLE_JOB, ABANDON_JOB, PURGE_JOB, PRUNE_JOB} <= set(sessions_of(client).jobs.names)


async def test_the_job_log_keeps_a_week_of_aggregated_rows(client: Client, db: asyncpg.Pool) -> None:
    old, recent, unaggregated = -9_000_001, -9_000_002, -9_000_003
    await db.execute(INSERT_LOG, 8, old, True)
    await db.execute(INSERT_LOG, 1, recent, True)
    await db.execute(INSERT_LOG, 30, unaggregated, False)
    await in_app(client, sessions_of(client).jobs.run, PRUNE_JOB, {})
    kept = await db.fetch(
        "SELECT job_id FROM pgqueuer_log WHERE job_id = ANY($1::bigint[])", [old, recent, unaggregated]
    )
    assert sorted(row["job_id"] for row in kept) == [unaggregated, recent]
    await db.execute("DELETE FROM pgqueuer_log WHERE job_id = ANY($1::bigint[])", [recent, unaggregated])
