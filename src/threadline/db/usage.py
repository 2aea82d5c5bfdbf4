"""Usage reports from `usage_events`: a time range's totals by day, model, thread, agent or user."""

from __future__ import annotations

import msgspec

from threadline.db.database import Database
from threadline.domain.usage import GroupBy, UsageGroup, UsageQuery, UsageReport, UsageTotals

MAX_GROUPS = 1_000
# Each grouping's key as text; days are UTC, like the `daily_usage` view's.
_KEYS = {
    GroupBy.DAY: "to_char((created_at AT TIME ZONE 'UTC')::date, 'YYYY-MM-DD')",
    GroupBy.MODEL: "model",
    GroupBy.THREAD: "coalesce(thread_id::text, 'deleted')",
    GroupBy.AGENT: "coalesce(agent, 'none')",
    GroupBy.USER: "user_id",
}
# Days read in order; every other grouping biggest first.
_ORDER = {GroupBy.DAY: "key"}
_SUMS = """
    count(*) FILTER (WHERE purpose = 'run') AS runs,
    coalesce(sum(prompt_tokens), 0)::bigint AS prompt_tokens,
    coalesce(sum(completion_tokens), 0)::bigint AS completion_tokens,
    coalesce(sum(cached_tokens), 0)::bigint AS cached_tokens,
    coalesce(sum(reasoning_tokens), 0)::bigint AS reasoning_tokens,
    coalesce(sum(total_tokens), 0)::bigint AS total_tokens,
    coalesce(sum(cost_usd), 0)::float8 AS cost_usd,
    count(*) FILTER (WHERE source = 'measured' AND purpose = 'run') AS measured_runs
"""
# $1 from (inclusive), $2 to (exclusive), $3 user id (NULL: everyone)
_RANGE = "created_at >= $1 AND created_at < $2 AND ($3::text IS NULL OR user_id = $3)"
GROUPED = {
    by: f"""
        SELECT {key} AS key, {_SUMS}
        FROM usage_events WHERE {_RANGE}
        GROUP BY 1 ORDER BY {_ORDER.get(by, "total_tokens DESC, key")} LIMIT {MAX_GROUPS}
    """
    for by, key in _KEYS.items()
}
TOTALS = f"SELECT {_SUMS} FROM usage_events WHERE {_RANGE}"


class PostgresUsageReports:
    """The `UsageReports` port over asyncpg."""

    def __init__(self, database: Database) -> None:
        self._db = database

    async def report(self, query: UsageQuery) -> UsageReport:
        arguments = (query.start, query.end, query.user_id)
        async with self._db.connection() as connection:
            rows = await connection.fetch(GROUPED[query.group_by], *arguments)
            totals = await connection.fetchrow(TOTALS, *arguments)
        return UsageReport(
            start=query.start,
            end=query.end,
            group_by=query.group_by,
            groups=[msgspec.convert(dict(row), UsageGroup) for row in rows],
            totals=msgspec.convert(dict(totals or {}), UsageTotals),
        )
