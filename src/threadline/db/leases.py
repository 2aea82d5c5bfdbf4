"""Run ownership in Postgres: leases renewed by live owners, runs whose owner went silent, cancel flags."""

from __future__ import annotations

from uuid import UUID

import msgspec

from threadline.db.database import Database
from threadline.domain.models import Run
from threadline.ports import OrphanedRun

RENEW = """
    UPDATE runs SET lease_expires_at = now() + make_interval(secs => $3)
    WHERE id = ANY($1::uuid[]) AND owner = $2 AND status IN ('pending', 'running')
    RETURNING id, cancel_requested_at IS NOT NULL AS cancel_requested
"""
EXPIRED = """
    SELECT r.id AS run_id, r.model, r.provider, r.cancel_requested_at IS NOT NULL AS cancel_requested,
           m.content, u.content AS question
    FROM runs r
    JOIN messages m ON m.id = r.assistant_message_id
    JOIN messages u ON u.id = r.user_message_id
    WHERE r.status IN ('pending', 'running') AND r.lease_expires_at < now()
    ORDER BY r.lease_expires_at
    LIMIT $1
"""
REQUEST_CANCEL = """
    UPDATE runs SET cancel_requested_at = coalesce(cancel_requested_at, now())
    WHERE id = $1 AND user_id = $2
    RETURNING id, thread_id, user_id, status, model, provider, user_message_id, assistant_message_id,
              created_at, error, first_token_at, finished_at, cancel_requested_at
"""


class PostgresRunLeases:
    """The `RunLeases` port over asyncpg."""

    def __init__(self, database: Database) -> None:
        self._db = database

    async def renew(self, owner: str, run_ids: list[UUID], lease_s: float) -> list[UUID]:
        """Extend this owner's leases; return the runs someone asked to cancel."""
        if not run_ids:
            return []
        async with self._db.connection() as connection:
            rows = await connection.fetch(RENEW, run_ids, owner, lease_s)
        return [row["id"] for row in rows if row["cancel_requested"]]

    async def orphaned(self, limit: int = 100) -> list[OrphanedRun]:
        async with self._db.connection() as connection:
            rows = await connection.fetch(EXPIRED, limit)
        return [msgspec.convert(dict(row), OrphanedRun) for row in rows]

    async def request_cancel(self, user_id: str, run_id: UUID) -> Run | None:
        async with self._db.connection() as connection:
            row = await connection.fetchrow(REQUEST_CANCEL, run_id, user_id)
        return None if row is None else msgspec.convert(dict(row), Run)
