"""Background jobs on pgqueuer: queued in Postgres next to the data they refer to, run by a worker.

`PgQueuerJobs` is the `Jobs` port: `enqueue` inside a caller's transaction commits the job with
the data, so no job is lost or points at rows that never committed. `register` and `schedule` add
entrypoints; `work` runs them until `stop`. Each job family registers itself with a function like
`register_session_jobs`, called by the lifespan and by `threadline worker` alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any
from uuid import UUID

import asyncpg
import msgspec
from pgqueuer import AsyncpgPoolDriver, Job, PgQueuer
from pgqueuer.adapters.persistence.qb import QueryQueueBuilder
from pgqueuer.models import Schedule

from threadline.db.database import Database
from threadline.db.housekeeping import PostgresHousekeeping
from threadline.db.titles import TITLE_JOB, PostgresTitles
from threadline.domain.pricing import load_price_table
from threadline.ports import ChatModels, TokenCounter
from threadline.service.titles import TitleWriter
from threadline.settings import Settings

log = logging.getLogger("threadline.jobs")

JobHandler = Callable[[dict[str, Any]], Awaitable[None]]
PeriodicHandler = Callable[[], Awaitable[None]]
ABANDON_JOB = "abandon_idle_threads"
PURGE_JOB = "purge_client_identity"
PRUNE_JOB = "prune_job_log"
EVERY_MINUTE = "* * * * *"
HOURLY = "17 * * * *"
DAILY = "41 3 * * *"
# pgqueuer keeps a log row per job state change and never deletes them; a week is enough to debug.
JOB_LOG_DAYS = 7
PRUNE_LOG = "DELETE FROM pgqueuer_log WHERE aggregated AND created < now() - make_interval(days => $1)"
PRUNE_STATISTICS = "DELETE FROM pgqueuer_statistics WHERE created < now() - make_interval(days => $1)"
# pgqueuer's own INSERT, run on the caller's connection; "skip" makes a queued dedupe_key a no-op.
ENQUEUE = QueryQueueBuilder().build_enqueue_query("skip")
NOW = timedelta(0)


class PgQueuerJobs:
    """The `Jobs` port over pgqueuer, and the worker that runs the registered entrypoints."""

    def __init__(self, database: Database, *, timeout_s: float) -> None:
        self._db = database
        self._timeout_s = timeout_s
        self._handlers: dict[str, JobHandler] = {}
        self._periodic: list[tuple[str, str, PeriodicHandler]] = []
        self._queue: PgQueuer | None = None
        self._stopping = asyncio.Event()
        self.schedule(PRUNE_JOB, DAILY, self._prune)

    async def enqueue(
        self, name: str, payload: dict[str, Any], *, connection: Any = None, dedupe_key: str | None = None
    ) -> None:
        arguments = ([0], [name], [msgspec.json.encode(payload)], [NOW], [dedupe_key], [None])
        if connection is not None:
            await connection.execute(ENQUEUE, *arguments)
            return
        async with self._db.connection() as fresh:
            await fresh.execute(ENQUEUE, *arguments)

    def register(self, name: str, handler: JobHandler) -> None:
        if name in self._handlers:
            raise ValueError(f"job {name!r} is registered already")
        self._handlers[name] = handler

    def schedule(self, name: str, cron: str, handler: PeriodicHandler) -> None:
        self._periodic.append((name, cron, handler))

    @property
    def names(self) -> list[str]:
        return sorted({*self._handlers, *(name for name, _, _ in self._periodic)})

    async def run(self, name: str, payload: dict[str, Any]) -> None:
        """Run one job (queued or periodic) here and now, as the worker would: for tests and operators."""
        async with asyncio.timeout(self._timeout_s):
            if name in self._handlers:
                await self._handlers[name](payload)
            else:
                await next(handler for periodic, _, handler in self._periodic if periodic == name)()

    async def _prune(self) -> None:
        async with self._db.transaction() as connection:
            await connection.execute(PRUNE_LOG, JOB_LOG_DAYS)
            await connection.execute(PRUNE_STATISTICS, JOB_LOG_DAYS * 4)

    async def work(self, database_url: str, *, command_timeout_s: float) -> None:
        """Run queued and periodic jobs until `stop`. pgqueuer gets a small pool of its own, without
        Threadline's JSON codecs, so its rows are read and written exactly as it expects."""
        pool = await asyncpg.create_pool(
            database_url, min_size=1, max_size=4, command_timeout=command_timeout_s, timeout=10
        )
        try:
            queue = PgQueuer(AsyncpgPoolDriver(pool))
            for name, handler in self._handlers.items():
                queue.entrypoint(name)(self._entrypoint(name, handler))
            for name, cron, periodic in self._periodic:
                queue.schedule(name, cron)(self._scheduled(name, periodic))
            self._queue = queue
            if self._stopping.is_set():
                return
            await queue.run(dequeue_timeout=timedelta(seconds=5), heartbeat_timeout=timedelta(seconds=30))
        finally:
            self._queue = None
            await pool.close()

    def stop(self) -> None:
        self._stopping.set()
        if self._queue is not None:
            self._queue.shutdown.set()

    def _entrypoint(self, name: str, handler: JobHandler) -> Callable[[Job], Awaitable[None]]:
        async def entrypoint(job: Job) -> None:
            payload = msgspec.json.decode(job.payload) if job.payload else {}
            async with asyncio.timeout(self._timeout_s):
                await handler(payload)

        entrypoint.__name__ = f"job_{name}"
        return entrypoint

    def _scheduled(self, name: str, handler: PeriodicHandler) -> Callable[[Schedule], Awaitable[None]]:
        async def scheduled(schedule: Schedule) -> None:
            async with asyncio.timeout(self._timeout_s):
                await handler()

        scheduled.__name__ = f"schedule_{name}"
        return scheduled


async def stop_worker(jobs: PgQueuerJobs, task: asyncio.Task[None], *, grace_s: float) -> None:
    """Let running jobs finish for `grace_s`, then cancel the worker."""
    jobs.stop()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait({task}, timeout=grace_s)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task


def register_session_jobs(
    jobs: PgQueuerJobs, *, database: Database, models: ChatModels, counter: TokenCounter, settings: Settings
) -> TitleWriter:
    """Titles after a thread's first reply; every minute, idle threads abandoned; hourly, old IPs purged."""
    sessions = settings.sessions
    titles = TitleWriter(
        store=PostgresTitles(database, prices=load_price_table(settings.quotas.price_table)),
        models=models,
        counter=counter,
        title_model=sessions.title_model,
        default_model=settings.model.default_model,
    )
    housekeeping = PostgresHousekeeping(database)

    async def title(payload: dict[str, Any]) -> None:
        await titles.write(UUID(payload["thread_id"]))

    async def abandon() -> None:
        if abandoned := await housekeeping.abandon_idle(sessions.idle_abandon_minutes):
            log.info("%d idle thread(s) abandoned", len(abandoned))

    async def purge() -> None:
        if purged := await housekeeping.purge_client_identity(sessions.metadata_retention_days):
            log.info("IP and user agent purged from %d row(s)", purged)

    jobs.register(TITLE_JOB, title)
    jobs.register(ABANDON_JOB, lambda _: abandon())
    jobs.register(PURGE_JOB, lambda _: purge())
    jobs.schedule(ABANDON_JOB, EVERY_MINUTE, abandon)
    jobs.schedule(PURGE_JOB, HOURLY, purge)
    return titles
