"""The session features' objects (threads, agents, stats, upkeep, regeneration, the job queue),
built once per process by the lifespan, and the in-process job worker's start and stop."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from threadline.db.agents import PostgresAgents
from threadline.db.chat import PostgresChatStore
from threadline.db.database import Database
from threadline.db.housekeeping import PostgresHousekeeping
from threadline.db.regenerate import PostgresRegenerations
from threadline.db.stats import PostgresStats
from threadline.db.threads import PostgresThreads
from threadline.db.titles import TitleOnFirstReply
from threadline.jobs import PgQueuerJobs, register_session_jobs, stop_worker
from threadline.ports import ChatModels, TokenCounter
from threadline.service.chat import ChatService
from threadline.service.regenerate import Regenerator
from threadline.service.runs import RunRegistry
from threadline.service.titles import TitleWriter
from threadline.settings import Settings

WORKER_STOP_GRACE_S = 10.0


@dataclass(frozen=True, slots=True)
class Sessions:
    threads: PostgresThreads
    agents: PostgresAgents
    stats: PostgresStats
    housekeeping: PostgresHousekeeping
    regenerator: Regenerator
    titles: TitleWriter
    jobs: PgQueuerJobs
    models: ChatModels
    idle_abandon_minutes: int


def build_sessions(
    *,
    database: Database,
    store: PostgresChatStore,
    chat: ChatService,
    models: ChatModels,
    counter: TokenCounter,
    registry: RunRegistry,
    settings: Settings,
    owner: str,
) -> Sessions:
    jobs = PgQueuerJobs(database, timeout_s=settings.jobs.timeout_s)
    store.on_finish(TitleOnFirstReply(jobs))
    titles = register_session_jobs(jobs, database=database, models=models, counter=counter, settings=settings)
    regenerator = Regenerator(
        chat=chat,
        store=store,
        regenerations=PostgresRegenerations(database, lease_s=settings.runs.lease_s),
        models=models,
        registry=registry,
        settings=settings,
        owner=owner,
    )
    return Sessions(
        threads=PostgresThreads(database),
        agents=PostgresAgents(database),
        stats=PostgresStats(database),
        housekeeping=PostgresHousekeeping(database),
        regenerator=regenerator,
        titles=titles,
        jobs=jobs,
        models=models,
        idle_abandon_minutes=settings.sessions.idle_abandon_minutes,
    )


def start_worker(sessions: Sessions, settings: Settings, database_url: str) -> asyncio.Task[None] | None:
    """The job worker inside this app process, unless THREADLINE_JOB_WORKER=false."""
    if not settings.jobs.worker_in_app:
        return None
    work = sessions.jobs.work(database_url, command_timeout_s=settings.database.command_timeout_s)
    return asyncio.create_task(work, name="job-worker")


async def stop_sessions(sessions: Sessions, worker: asyncio.Task[None] | None) -> None:
    if worker is not None:
        await stop_worker(sessions.jobs, worker, grace_s=WORKER_STOP_GRACE_S)
