"""Owns the app's resources: migrations, the pool, Redis, the model client and the runs in flight."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import AsyncIterator
from uuid import UUID

import anyio
from litestar import Litestar
from redis.asyncio import Redis

from threadline.accounting import build_accounting
from threadline.adapters.echo_chat import EchoChat
from threadline.adapters.estimated_tokens import EstimatedTokens
from threadline.adapters.fanout_events import FanoutEventLog
from threadline.adapters.model_router import ModelRouter
from threadline.adapters.openai_chat import OpenAIChat, create_client
from threadline.adapters.redis_cancel import RedisCancelSignal
from threadline.adapters.redis_events import RedisEventLog
from threadline.db import migrate
from threadline.db.chat import PostgresChatStore
from threadline.db.database import Database
from threadline.db.history import PostgresHistory
from threadline.db.leases import PostgresRunLeases
from threadline.db.pool import create_pool
from threadline.http.auth import issue_stream_token
from threadline.http.sse import stream_path
from threadline.memory import attach_memory_jobs, build_memory, check_embedding_dim
from threadline.service.chat import ChatService
from threadline.service.lifecycle import RunKeeper
from threadline.service.runs import RunRegistry
from threadline.service.streams import RunStreams
from threadline.services import Services
from threadline.sessions import build_sessions, start_worker, stop_sessions
from threadline.settings import Settings

log = logging.getLogger("threadline")
EMBEDDING_DIM = 256


def owner_id() -> str:
    """Names this process in `runs.owner`, so a sweeper can tell whose runs were orphaned."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@contextlib.asynccontextmanager
async def lifespan(settings: Settings, app: Litestar) -> AsyncIterator[None]:
    database_url, redis_url = settings.database.url, settings.redis.url
    if database_url is None or redis_url is None:
        raise RuntimeError("DATABASE_URL and REDIS_URL must be set; `threadline serve` starts embedded ones.")
    if settings.database.migrate_on_start:
        dim = settings.memory.embedding_dim
        await anyio.to_thread.run_sync(lambda: migrate.upgrade(database_url, embedding_dim=dim))
    pool = await create_pool(database_url, settings.database)
    # Every live SSE follower may hold a connection in a blocking read: size the pool for them.
    redis = Redis.from_url(
        redis_url,
        socket_timeout=settings.redis.timeout_s,
        socket_connect_timeout=settings.redis.timeout_s,
        max_connections=settings.redis.max_connections,
    )
    model_client = create_client(settings.model) if settings.model.configured else None
    try:
        database = Database(pool, acquire_timeout_s=settings.database.acquire_timeout_s)
        counter = EstimatedTokens()
        accounting = build_accounting(database=database, counter=counter, settings=settings)
        store = PostgresChatStore(database, lease_s=settings.runs.lease_s, prices=accounting.prices)
        # Readers here follow this process's runs in memory; Redis serves every other process.
        events = FanoutEventLog(RedisEventLog(redis))
        registry = RunRegistry()
        models = ModelRouter(
            echo=EchoChat(delay_ms=settings.model.echo_delay_ms),
            remote=OpenAIChat(model_client, include_usage=settings.model.include_usage)
            if model_client
            else None,
        )
        owner = owner_id()
        secret = settings.auth.jwt_secret.reveal()
        memory = build_memory(
            database=database, models=models, counter=counter, settings=settings, client=model_client
        )
        await check_embedding_dim(memory)

        def stream_url(run_id: UUID, user_id: str) -> str:
            ttl = settings.runs.stream_token_ttl_s
            return f"{stream_path(run_id)}?token={issue_stream_token(secret, user_id, run_id, ttl_s=ttl)}"

        chat = ChatService(
            store=store,
            models=models,
            events=events,
            counter=counter,
            registry=registry,
            settings=settings,
            owner=owner,
            stream_url=stream_url,
            admission=accounting.admission,
            metrics=accounting.metrics,
            memory=memory.recaller,
        )
        streams = RunStreams(
            events=events,
            store=store,
            heartbeat_s=settings.stream.heartbeat_s,
            stream_url=stream_url,
            metrics=accounting.metrics,
        )
        sessions = build_sessions(
            database=database, store=store, chat=chat, models=models, counter=counter,
            registry=registry, settings=settings, owner=owner,
        )  # fmt: skip
        attach_memory_jobs(memory, sessions.jobs, store=store, settings=settings)
        cancel_signal = RedisCancelSignal(redis)
        keeper = RunKeeper(
            leases=PostgresRunLeases(database),
            store=store,
            events=events,
            registry=registry,
            signal=cancel_signal,
            counter=counter,
            owner=owner,
            lease_s=settings.runs.lease_s,
            interval_s=settings.runs.sweep_interval_s,
            metrics=accounting.metrics,
        )
        app.state.services = Services(
            settings=settings,
            database=database,
            redis=redis,
            store=store,
            history=PostgresHistory(database),
            chat=chat,
            streams=streams,
            registry=registry,
            keeper=keeper,
            sessions=sessions,
            accounting=accounting,
            memory=memory,
        )
        background = [
            asyncio.create_task(keeper.keep(), name="run-keeper"),
            asyncio.create_task(cancel_signal.listen(keeper.on_cancel_signal), name="cancel-listener"),
        ]
        log.info(
            "threadline ready: model %s%s",
            settings.model.default_model,
            f" at {settings.model.base_url}" if settings.model.base_url else "",
        )
        worker = start_worker(sessions, settings, database_url)
        try:
            yield
        finally:
            with anyio.CancelScope(shield=True):
                await stop_sessions(sessions, worker)
                await registry.drain(settings.server.shutdown_grace_s)
                await events.flush()  # what the drain's last runs left queued for other processes
                await accounting.aclose()
                await _cancel(background)
    finally:
        with anyio.CancelScope(shield=True):
            if model_client is not None:
                await model_client.close()
            await redis.aclose()
            await pool.close()


async def _cancel(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
