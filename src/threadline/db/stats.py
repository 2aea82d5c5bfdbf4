"""Statistics over threads, runs and usage: one query, for one user or everyone."""

from __future__ import annotations

from datetime import datetime

import msgspec

from threadline.db.database import Database
from threadline.db.sql import load
from threadline.domain.models import RunStatus, ThreadStatus

STATS = load("stats.sql")


class StatsFilter(msgspec.Struct, frozen=True, kw_only=True):
    user_id: str | None = None
    agent: str | None = None
    created_from: datetime | None = None
    created_before: datetime | None = None


class Timing(msgspec.Struct, frozen=True, kw_only=True):
    mean_ms: float | None
    p95_ms: float | None


class Tokens(msgspec.Struct, frozen=True, kw_only=True):
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    reasoning_tokens: int
    total_tokens: int
    cost_usd: float


class Stats(msgspec.Struct, frozen=True, kw_only=True):
    threads_by_status: dict[ThreadStatus, int]
    total_threads: int
    runs_by_status: dict[RunStatus, int]
    total_runs: int
    # Completed runs over finished ones; None before any run finished.
    success_rate: float | None
    time_to_first_token: Timing
    latency: Timing
    tokens: Tokens


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


class PostgresStats:
    def __init__(self, database: Database) -> None:
        self._db = database

    async def stats(self, where: StatsFilter) -> Stats:
        async with self._db.connection() as connection:
            row = await connection.fetchrow(
                STATS, where.user_id, where.agent, where.created_from, where.created_before
            )
        assert row is not None
        threads = {status: int(row["threads"].get(status.value, 0)) for status in ThreadStatus}
        runs = {status: int(row["runs"].get(status.value, 0)) for status in RunStatus}
        finished = sum(count for status, count in runs.items() if status.terminal)
        return Stats(
            threads_by_status=threads,
            total_threads=sum(threads.values()),
            runs_by_status=runs,
            total_runs=sum(runs.values()),
            success_rate=round(runs[RunStatus.COMPLETED] / finished, 4) if finished else None,
            time_to_first_token=Timing(
                mean_ms=_rounded(row["ttft_mean_ms"]), p95_ms=_rounded(row["ttft_p95_ms"])
            ),
            latency=Timing(mean_ms=_rounded(row["latency_mean_ms"]), p95_ms=_rounded(row["latency_p95_ms"])),
            tokens=msgspec.convert({key: row[key] for key in Tokens.__struct_fields__}, Tokens),
        )
