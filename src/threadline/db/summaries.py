"""Thread summaries in Postgres: the job queued when a thread outgrows its window, its input, the save."""

from __future__ import annotations

from uuid import UUID

import msgspec

from threadline.db.call_usage import record_call_usage
from threadline.db.database import Connection, Database
from threadline.domain.memory import SummarySource
from threadline.domain.models import Message
from threadline.domain.pricing import PriceTable, load_price_table
from threadline.ports import Jobs, RunOutcome, TitleUsage

SUMMARY_JOB = "summarize_thread"
LIVE = "superseded_at IS NULL AND content <> '' AND status IS DISTINCT FROM 'streaming'"
# The newest message that is no longer in the recent window (the window's `$2` newest are), if any.
CUTOFF = f"""
    SELECT seq FROM messages WHERE thread_id = $1 AND {LIVE}
    ORDER BY seq DESC OFFSET $2 LIMIT 1
"""
THREAD = """
    SELECT t.id AS thread_id, t.user_id, a.model AS agent_model, t.context_summary AS summary,
           t.summary_through_seq AS through_seq
    FROM threads t JOIN agents a ON a.slug = t.agent
    WHERE t.id = $1
"""
# The newest `$4` of them at most: a summary keeps the latest lines anyway, and a thread that never
# had one (imported, say) must not load its whole history into a job.
LEFT_THE_WINDOW = f"""
    SELECT * FROM (
        SELECT id, thread_id, seq, role, content, status, run_id, metadata, created_at, completed_at, error
        FROM messages
        WHERE thread_id = $1 AND seq > $2 AND seq <= $3 AND {LIVE}
        ORDER BY seq DESC LIMIT $4
    ) newest ORDER BY seq
"""
MAX_MESSAGES = 200
# A run's end queues a summary once `$3` messages have left the window since the last one.
NEEDS_SUMMARY = """
    SELECT t.id FROM runs r JOIN threads t ON t.id = r.thread_id
    WHERE r.id = $1 AND (
        SELECT count(*) FROM messages m
        WHERE m.thread_id = t.id AND m.seq > t.summary_through_seq AND m.superseded_at IS NULL
          AND m.content <> '' AND m.status IS DISTINCT FROM 'streaming'
    ) >= $2::int + $3::int
"""
SAVE_SUMMARY = """
    UPDATE threads SET context_summary = $2, summary_through_seq = $3
    WHERE id = $1 AND summary_through_seq < $3
"""


class SummaryWhenOutgrown:
    """A finish hook: once enough messages have left a thread's recent window, queue its summary."""

    def __init__(self, jobs: Jobs, *, window: int, every: int) -> None:
        self._jobs = jobs
        self._window = window
        self._every = every

    async def __call__(self, connection: Connection, outcome: RunOutcome) -> None:
        thread_id = await connection.fetchval(NEEDS_SUMMARY, outcome.run_id, self._window, self._every)
        if thread_id is not None:
            await self._jobs.enqueue(
                SUMMARY_JOB,
                {"thread_id": str(thread_id)},
                connection=connection,
                dedupe_key=f"summary:{thread_id}",
            )


class PostgresSummaries:
    """The `SummaryStore` port over asyncpg."""

    def __init__(self, database: Database, *, prices: PriceTable | None = None) -> None:
        self._db = database
        self._prices = prices or load_price_table(None)

    async def summary_source(self, thread_id: UUID, window: int) -> SummarySource | None:
        async with self._db.connection() as connection:
            cutoff = await connection.fetchval(CUTOFF, thread_id, window)
            thread = await connection.fetchrow(THREAD, thread_id)
            if cutoff is None or thread is None or cutoff <= thread["through_seq"]:
                return None
            rows = await connection.fetch(
                LEFT_THE_WINDOW, thread_id, thread["through_seq"], cutoff, MAX_MESSAGES
            )
        messages = [msgspec.convert(dict(row), Message) for row in rows]
        # Through the cutoff, even if its newest messages were superseded or empty.
        return SummarySource(**dict(thread) | {"through_seq": cutoff}, messages=messages)

    async def save_summary(
        self, source: SummarySource, summary: str, through_seq: int, usage: TitleUsage | None
    ) -> bool:
        async with self._db.transaction() as connection:
            if usage is not None:
                await record_call_usage(
                    connection, purpose="summary", thread_id=source.thread_id, call=usage, prices=self._prices
                )
            status = await connection.execute(SAVE_SUMMARY, source.thread_id, summary, through_seq)
        return status == "UPDATE 1"
