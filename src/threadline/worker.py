"""`threadline worker`: the background jobs without the HTTP API, for running them on their own
processes (set THREADLINE_JOB_WORKER=false on the app processes then)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

import anyio

from threadline.adapters.echo_chat import EchoChat
from threadline.adapters.estimated_tokens import EstimatedTokens
from threadline.adapters.model_router import ModelRouter
from threadline.adapters.openai_chat import OpenAIChat, create_client
from threadline.db.database import Database
from threadline.db.pool import create_pool
from threadline.jobs import PgQueuerJobs, register_session_jobs
from threadline.memory import attach_memory_jobs, build_memory
from threadline.settings import Settings

log = logging.getLogger("threadline.worker")


async def run_worker(settings: Settings, database_url: str) -> None:
    """Run every registered job until SIGINT or SIGTERM, then let running jobs finish."""
    pool = await create_pool(database_url, settings.database)
    client = create_client(settings.model) if settings.model.configured else None
    try:
        database = Database(pool, acquire_timeout_s=settings.database.acquire_timeout_s)
        models = ModelRouter(
            echo=EchoChat(delay_ms=settings.model.echo_delay_ms),
            remote=OpenAIChat(client, include_usage=settings.model.include_usage) if client else None,
        )
        jobs = PgQueuerJobs(database, timeout_s=settings.jobs.timeout_s)
        register_session_jobs(
            jobs, database=database, models=models, counter=EstimatedTokens(), settings=settings
        )
        memory = build_memory(
            database=database, models=models, counter=EstimatedTokens(), settings=settings, client=client
        )
        attach_memory_jobs(memory, jobs, store=None, settings=settings)
        loop = asyncio.get_running_loop()
        for stop_signal in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(stop_signal, jobs.stop)
        log.info("threadline worker: running %s", ", ".join(jobs.names))
        await jobs.work(database_url, command_timeout_s=settings.database.command_timeout_s)
    finally:
        with anyio.CancelScope(shield=True):
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.close()
            await pool.close()
