"""Run admissions on Postgres: live-run slots and token reservations, serialised per user."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

import msgspec

from threadline.db.database import Database
from threadline.domain.usage import (
    Admission,
    AdmissionRequest,
    BudgetStatus,
    BudgetWindow,
    next_midnight,
    next_month,
)

# One round trip (migration 0004 has the function): it takes the user's advisory lock, then checks and
# reserves in a statement whose snapshot sees every earlier admission and settlement. Admissions of
# one user queue on that lock, briefly; other users' never wait for it (up to hash collisions).
ADMIT_RUN = "SELECT * FROM threadline_admit_run($1, $2, $3, $4, $5, $6, $7, $8, $9)"
RELEASE = "DELETE FROM run_admissions WHERE run_id = $1"
BUDGET = """
    WITH today AS (SELECT (now() AT TIME ZONE 'UTC')::date AS day)
    SELECT coalesce(l.daily_token_budget, $2::bigint) AS daily_budget,
           coalesce(l.monthly_token_budget, $3::bigint) AS monthly_budget,
           coalesce((SELECT sum(total_tokens) FROM user_daily_tokens d, today
                     WHERE d.user_id = $1 AND d.day = today.day), 0)::bigint AS used_today,
           coalesce((SELECT sum(total_tokens) FROM user_daily_tokens d, today
                     WHERE d.user_id = $1 AND d.day >= date_trunc('month', today.day)::date
                       AND d.day <= today.day), 0)::bigint AS used_this_month,
           (SELECT count(*) FROM run_admissions a WHERE a.user_id = $1) AS live_runs,
           coalesce((SELECT sum(reserved_tokens) FROM run_admissions a WHERE a.user_id = $1), 0)::bigint
               AS held_tokens
    FROM (VALUES (1)) AS one (x)
    LEFT JOIN user_limits l ON l.user_id = $1
"""
OVERRIDES = "SELECT daily_token_budget, monthly_token_budget FROM user_limits WHERE user_id = $1"
SET_OVERRIDES = """
    INSERT INTO user_limits AS l (user_id, daily_token_budget, monthly_token_budget) VALUES ($1, $2, $3)
    ON CONFLICT (user_id) DO UPDATE SET daily_token_budget = excluded.daily_token_budget,
        monthly_token_budget = excluded.monthly_token_budget, updated_at = now()
"""
# An admission whose run has not committed within this long belongs to a request that died.
STALE_AFTER_S = 60.0


def _window(budget: int | None, used: int, held: int, resets_at: datetime) -> BudgetWindow:
    remaining = None if budget is None else max(0, budget - used - held)
    return BudgetWindow(budget=budget, used=used, reserved=held, remaining=remaining, resets_at=resets_at)


class PostgresAdmissions:
    """The `Admissions` port over asyncpg."""

    def __init__(self, database: Database) -> None:
        self._db = database

    async def admit(self, request: AdmissionRequest) -> Admission:
        async with self._db.connection() as connection:
            row = await connection.fetchrow(
                ADMIT_RUN, request.user_id, request.run_id, request.thread_id, request.max_live_runs,
                request.daily_budget, request.monthly_budget, request.fixed_tokens, request.context_cap,
                STALE_AFTER_S,
            )  # fmt: skip
        assert row is not None
        return msgspec.convert(dict(row), Admission)

    async def release(self, run_id: UUID) -> None:
        async with self._db.connection() as connection:
            await connection.execute(RELEASE, run_id)

    async def budget(self, user_id: str, daily: int | None, monthly: int | None) -> BudgetStatus:
        async with self._db.connection() as connection:
            row = await connection.fetchrow(BUDGET, user_id, daily, monthly)
        assert row is not None
        now = datetime.now(UTC)
        held = row["held_tokens"]
        return BudgetStatus(
            daily=_window(row["daily_budget"], row["used_today"], held, next_midnight(now)),
            monthly=_window(row["monthly_budget"], row["used_this_month"], held, next_month(now)),
            live_runs=row["live_runs"],
        )

    async def overrides(self, user_id: str) -> tuple[int | None, int | None]:
        async with self._db.connection() as connection:
            row = await connection.fetchrow(OVERRIDES, user_id)
        return (None, None) if row is None else (row["daily_token_budget"], row["monthly_token_budget"])

    async def set_overrides(self, user_id: str, daily: int | None, monthly: int | None) -> None:
        async with self._db.connection() as connection:
            await connection.execute(SET_OVERRIDES, user_id, daily, monthly)
