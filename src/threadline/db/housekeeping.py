"""Scheduled upkeep of threads: idle ones become `abandoned`, old IPs and user agents are purged."""

from __future__ import annotations

from uuid import UUID

from threadline.db.database import Database

# active → abandoned, the one move idleness makes (see domain/lifecycle.py). A thread with a live
# run is not idle; a thread a chat request holds locked is re-checked after it commits.
ABANDON_IDLE = """
    UPDATE threads t SET status = 'abandoned', updated_at = now()
    WHERE t.status = 'active'
      AND t.last_activity_at < now() - make_interval(mins => $1)
      AND ($2::text IS NULL OR t.user_id = $2)
      AND NOT EXISTS (
          SELECT 1 FROM runs r WHERE r.thread_id = t.id AND r.status IN ('pending', 'running'))
    RETURNING t.id
"""
# Only the identifying parts of `metadata.client` go; device hints stay for analytics.
PURGE_THREADS = """
    UPDATE threads
    SET metadata = jsonb_set(metadata, '{client}', (metadata -> 'client') - 'ip' - 'user_agent')
    WHERE metadata -> 'client' ?| array['ip', 'user_agent']
      AND created_at < now() - make_interval(days => $1)
"""
PURGE_MESSAGES = """
    UPDATE messages
    SET metadata = jsonb_set(metadata, '{client}', (metadata -> 'client') - 'ip' - 'user_agent')
    WHERE metadata -> 'client' ?| array['ip', 'user_agent']
      AND created_at < now() - make_interval(days => $1)
"""


def _count(status: str) -> int:
    """The row count in a command status such as `UPDATE 3`."""
    return int(status.rsplit(" ", 1)[-1])


class PostgresHousekeeping:
    def __init__(self, database: Database) -> None:
        self._db = database

    async def abandon_idle(self, max_idle_minutes: int, *, user_id: str | None = None) -> list[UUID]:
        """Mark active threads idle longer than `max_idle_minutes` abandoned; return their ids."""
        async with self._db.connection() as connection:
            rows = await connection.fetch(ABANDON_IDLE, max_idle_minutes, user_id)
        return [row["id"] for row in rows]

    async def purge_client_identity(self, retention_days: int) -> int:
        """Drop IPs and user agents recorded more than `retention_days` ago; return the rows changed."""
        async with self._db.transaction() as connection:
            threads = _count(await connection.execute(PURGE_THREADS, retention_days))
            messages = _count(await connection.execute(PURGE_MESSAGES, retention_days))
        return threads + messages
