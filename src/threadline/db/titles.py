"""Titles in Postgres: the job queued with a thread's first reply, its input, and the title saved."""

from __future__ import annotations

from uuid import UUID

import msgspec

from threadline.db.call_usage import record_call_usage
from threadline.db.database import Connection, Database
from threadline.domain.models import RunStatus
from threadline.domain.pricing import PriceTable, load_price_table
from threadline.ports import Jobs, RunOutcome, TitleSource, TitleUsage

TITLE_JOB = "title_thread"
NEEDS_TITLE = """
    SELECT t.id FROM runs r JOIN threads t ON t.id = r.thread_id
    WHERE r.id = $1 AND r.status = 'completed' AND t.title IS NULL
"""
TITLE_SOURCE = """
    SELECT t.id AS thread_id, t.user_id, a.model AS agent_model, m.content AS first_message
    FROM threads t
    JOIN agents a ON a.slug = t.agent
    JOIN LATERAL (
        SELECT content FROM messages
        WHERE thread_id = t.id AND role = 'user' AND superseded_at IS NULL
        ORDER BY seq LIMIT 1
    ) m ON true
    WHERE t.id = $1 AND t.title IS NULL
"""
SAVE_TITLE = "UPDATE threads SET title = $2, updated_at = now() WHERE id = $1 AND title IS NULL"


class TitleOnFirstReply:
    """A finish hook: a thread's first completed reply queues its title, in the same transaction."""

    def __init__(self, jobs: Jobs) -> None:
        self._jobs = jobs

    async def __call__(self, connection: Connection, outcome: RunOutcome) -> None:
        if outcome.status is not RunStatus.COMPLETED:
            return
        thread_id = await connection.fetchval(NEEDS_TITLE, outcome.run_id)
        if thread_id is not None:
            await self._jobs.enqueue(
                TITLE_JOB,
                {"thread_id": str(thread_id)},
                connection=connection,
                dedupe_key=f"title:{thread_id}",
            )


class PostgresTitles:
    """The `TitleStore` port over asyncpg."""

    def __init__(self, database: Database, *, prices: PriceTable | None = None) -> None:
        self._db = database
        self._prices = prices or load_price_table(None)

    async def title_source(self, thread_id: UUID) -> TitleSource | None:
        async with self._db.connection() as connection:
            record = await connection.fetchrow(TITLE_SOURCE, thread_id)
        return None if record is None else msgspec.convert(dict(record), TitleSource)

    async def save_title(self, source: TitleSource, title: str, usage: TitleUsage | None) -> bool:
        async with self._db.transaction() as connection:
            if usage is not None:
                await record_call_usage(
                    connection, purpose="title", thread_id=source.thread_id, call=usage, prices=self._prices
                )
            status = await connection.execute(SAVE_TITLE, source.thread_id, title)
        return status == "UPDATE 1"
