"""ChatStore on Postgres: turns committed atomically, runs finished exactly once."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from uuid import UUID

import asyncpg
import msgspec

from threadline.db.database import Connection, Database
from threadline.db.partials import PartialWriter
from threadline.db.sql import load
from threadline.domain.errors import (
    IdempotencyMismatch,
    NotFound,
    RunInProgress,
)
from threadline.domain.lifecycle import status_for_message
from threadline.domain.models import (
    Agent,
    ChatTurn,
    Message,
    Run,
    Thread,
)
from threadline.domain.pricing import PriceTable, load_price_table
from threadline.ports import NewTurn, RunOutcome, RunSnapshot

T = TypeVar("T")
log = logging.getLogger("threadline.db")
# Runs inside the transaction that ends a run, so follow-up work (a title, embeddings) is queued
# exactly when the run's end is committed. Hooks must be idempotent: a run can be finished twice.
FinishHook = Callable[[Connection, RunOutcome], Awaitable[None]]

THREAD_COLUMNS = (
    "id, user_id, agent, title, status, metadata, context_summary, message_count, "
    "created_at, updated_at, last_activity_at"
)
RUN_COLUMNS = (
    "id, thread_id, user_id, status, model, provider, user_message_id, assistant_message_id, "
    "created_at, error, first_token_at, finished_at, cancel_requested_at"
)
MESSAGE_COLUMNS = (
    "id, thread_id, seq, role, content, status, run_id, metadata, created_at, completed_at, error"
)

AGENT_BY_SLUG = (
    "SELECT slug, name, system_prompt, model, temperature, max_output_tokens FROM agents WHERE slug = $1"
)
DEFAULT_AGENT = (
    "SELECT slug, name, system_prompt, model, temperature, max_output_tokens FROM agents WHERE is_default"
)
THREAD_AGENT = "SELECT agent FROM threads WHERE id = $1 AND user_id = $2"
THREAD_FOR_UPDATE = f"SELECT {THREAD_COLUMNS} FROM threads WHERE id = $1 AND user_id = $2 FOR UPDATE"
LATEST_ACTIVE_FOR_UPDATE = f"""
    SELECT {THREAD_COLUMNS} FROM threads
    WHERE user_id = $1 AND status = 'active'
    ORDER BY last_activity_at DESC LIMIT 1
    FOR UPDATE
"""
INSERT_THREAD = f"""
    INSERT INTO threads (id, user_id, agent, metadata) VALUES ($1, $2, $3, $4)
    RETURNING {THREAD_COLUMNS}
"""
REOPEN_THREAD = "UPDATE threads SET status = 'active' WHERE id = $1"
TURN_BY_CLIENT_ID = """
    SELECT m.request_fingerprint, r.id AS run_id
    FROM messages m JOIN runs r ON r.user_message_id = m.id
    WHERE m.user_id = $1 AND m.client_message_id = $2
"""
LIVE_RUN_IN_THREAD = "SELECT id FROM runs WHERE thread_id = $1 AND status IN ('pending', 'running') LIMIT 1"
ALLOCATE_SEQ = f"""
    UPDATE threads
    SET next_seq = next_seq + 2, message_count = message_count + 2,
        last_activity_at = now(), updated_at = now()
    WHERE id = $1
    RETURNING next_seq - 2 AS seq, {THREAD_COLUMNS}
"""
INSERT_MESSAGE = """
    INSERT INTO messages (id, thread_id, user_id, seq, role, content, status, run_id,
                          client_message_id, request_fingerprint, metadata)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
"""
INSERT_RUN = f"""
    INSERT INTO runs (id, thread_id, user_id, status, model, provider, user_message_id,
                      assistant_message_id, on_disconnect, owner, lease_expires_at)
    VALUES ($1, $2, $3, 'pending', $4, $5, $6, $7, $8, $9, now() + make_interval(secs => $10))
    RETURNING {RUN_COLUMNS}
"""
RUN_BY_ID = f"SELECT {RUN_COLUMNS} FROM runs WHERE id = $1"
RUN_FOR_USER = f"SELECT {RUN_COLUMNS} FROM runs WHERE id = $1 AND user_id = $2"
THREAD_FOR_USER = f"SELECT {THREAD_COLUMNS} FROM threads WHERE id = $1 AND user_id = $2"
PROMPT_HISTORY = f"""
    SELECT {MESSAGE_COLUMNS} FROM (
        SELECT {MESSAGE_COLUMNS} FROM messages
        WHERE thread_id = $1 AND superseded_at IS NULL AND content <> ''
          AND status IS DISTINCT FROM 'streaming'
        ORDER BY seq DESC LIMIT $2
    ) recent ORDER BY seq
"""
MARK_RUNNING = """
    UPDATE runs SET status = 'running', started_at = now(),
                    lease_expires_at = now() + make_interval(secs => $2)
    WHERE id = $1 AND status = 'pending'
"""
MARK_FIRST_OUTPUT = "UPDATE runs SET first_token_at = now() WHERE id = $1 AND first_token_at IS NULL"
SNAPSHOT = """
    SELECT r.id AS run_id, r.user_id, r.thread_id, r.assistant_message_id AS message_id,
           r.status, r.model, r.error, r.retrieved AS sources, m.content,
           CASE WHEN u.id IS NULL THEN NULL ELSE jsonb_build_object(
               'prompt_tokens', u.prompt_tokens, 'completion_tokens', u.completion_tokens,
               'cached_tokens', u.cached_tokens, 'reasoning_tokens', u.reasoning_tokens,
               'total_tokens', u.total_tokens, 'source', u.source) END AS usage
    FROM runs r
    JOIN messages m ON m.id = r.assistant_message_id
    LEFT JOIN usage_events u ON u.run_id = r.id
    WHERE r.id = $1
"""
FINISH_RUN = load("finish_run.sql")
CREATE_THREAD = f"""
    INSERT INTO threads (id, user_id, agent) VALUES ($1, $2, $3)
    ON CONFLICT (id) DO NOTHING
    RETURNING {THREAD_COLUMNS}
"""
ALL_AGENTS = (
    "SELECT slug, name, system_prompt, model, temperature, max_output_tokens FROM agents ORDER BY slug"
)
LIVE_RUN_OF_USER = """
    SELECT id FROM runs WHERE thread_id = $1 AND user_id = $2 AND status IN ('pending', 'running')
    ORDER BY created_at DESC LIMIT 1
"""


def _convert(record: asyncpg.Record | None, kind: type[T]) -> T | None:
    return None if record is None else msgspec.convert(dict(record), kind)


def _with_client(metadata: dict[str, Any], client: dict[str, Any]) -> dict[str, Any]:
    """The request's metadata plus who sent it, under the server-owned `client` key."""
    return {**metadata, "client": client} if client else metadata


class PostgresChatStore:
    """The `ChatStore` port over asyncpg."""

    _finish_hooks: tuple[FinishHook, ...] = ()

    def on_finish(self, hook: FinishHook) -> None:
        """Run `hook` in the transaction that ends each run."""
        self._finish_hooks = (*self._finish_hooks, hook)

    def __init__(self, database: Database, *, lease_s: float, prices: PriceTable | None = None) -> None:
        self._db = database
        self._lease_s = lease_s
        self._partials = PartialWriter(database)
        self._prices = prices or load_price_table(None)

    async def agent_for(self, user_id: str, thread_id: UUID | None, slug: str | None) -> Agent:
        async with self._db.connection() as connection:
            if thread_id is not None:
                bound = await connection.fetchval(THREAD_AGENT, thread_id, user_id)
                if bound is None:
                    raise NotFound("Thread not found.")
                slug = bound
            record = await connection.fetchrow(
                AGENT_BY_SLUG if slug else DEFAULT_AGENT, *([slug] if slug else [])
            )
        agent = _convert(record, Agent)
        if agent is None:
            raise NotFound(f"Agent {slug!r} not found.")
        return agent

    async def begin_turn(self, turn: NewTurn) -> ChatTurn:
        try:
            return await self._begin_turn(turn)
        except asyncpg.UniqueViolationError:
            # A concurrent request with the same client_message_id committed first: replay it.
            replay = await self._replay(turn)
            if replay is None:
                raise
            return replay

    async def _begin_turn(self, turn: NewTurn) -> ChatTurn:
        async with self._db.transaction() as connection:
            if (replay := await self._replay(turn, connection)) is not None:
                return replay
            thread = await self._lock_thread(connection, turn)
            # A duplicate that waited for the thread lock sees the first request's commit now.
            if (replay := await self._replay(turn, connection)) is not None:
                return replay
            if (live := await connection.fetchval(LIVE_RUN_IN_THREAD, thread.id)) is not None:
                raise RunInProgress("A reply is still being generated in this thread.", run_id=live)
            row = await connection.fetchrow(ALLOCATE_SEQ, thread.id)
            assert row is not None
            seq: int = row["seq"]
            thread = msgspec.convert({k: v for k, v in row.items() if k != "seq"}, Thread)
            run_id, user_message_id, assistant_message_id = turn.run_id, uuid.uuid4(), uuid.uuid4()
            await connection.execute(
                INSERT_MESSAGE, user_message_id, thread.id, turn.user_id, seq, "user", turn.content,
                None, run_id, turn.client_message_id, turn.request_fingerprint,
                _with_client(turn.metadata, turn.client),
            )  # fmt: skip
            await connection.execute(
                INSERT_MESSAGE, assistant_message_id, thread.id, turn.user_id, seq + 1, "assistant", "",
                "streaming", run_id, None, None, {},
            )  # fmt: skip
            record = await connection.fetchrow(
                INSERT_RUN, run_id, thread.id, turn.user_id, turn.model, turn.provider,
                user_message_id, assistant_message_id, "continue", turn.owner, self._lease_s,
            )  # fmt: skip
        run = _convert(record, Run)
        assert run is not None
        return ChatTurn(run=run, thread=thread)

    async def _lock_thread(self, connection: Connection, turn: NewTurn) -> Thread:
        if turn.thread_id is not None:
            thread = _convert(
                await connection.fetchrow(THREAD_FOR_UPDATE, turn.thread_id, turn.user_id), Thread
            )
            if thread is None:
                raise NotFound("Thread not found.")
        else:
            thread = _convert(await connection.fetchrow(LATEST_ACTIVE_FOR_UPDATE, turn.user_id), Thread)
            if thread is None:
                created = await connection.fetchrow(
                    INSERT_THREAD,
                    uuid.uuid4(),
                    turn.user_id,
                    turn.agent or "default",
                    _with_client(turn.metadata, turn.client),
                )
                thread = _convert(created, Thread)
                assert thread is not None
        if status_for_message(thread.status, thread.id) is not thread.status:
            await connection.execute(REOPEN_THREAD, thread.id)
        return thread

    async def _replay(self, turn: NewTurn, connection: Connection | None = None) -> ChatTurn | None:
        if turn.client_message_id is None:
            return None
        if connection is None:
            async with self._db.connection() as fresh:
                return await self._replay(turn, fresh)
        found = await connection.fetchrow(TURN_BY_CLIENT_ID, turn.user_id, turn.client_message_id)
        if found is None:
            return None
        if found["request_fingerprint"] != turn.request_fingerprint:
            raise IdempotencyMismatch("This client_message_id was already used for a different request.")
        run = _convert(await connection.fetchrow(RUN_BY_ID, found["run_id"]), Run)
        assert run is not None
        thread = _convert(await connection.fetchrow(THREAD_FOR_USER, run.thread_id, turn.user_id), Thread)
        if thread is None:
            raise NotFound("Thread not found.")
        return ChatTurn(run=run, thread=thread, replayed=True)

    async def prompt_history(self, thread_id: UUID, limit: int) -> list[Message]:
        async with self._db.connection() as connection:
            rows = await connection.fetch(PROMPT_HISTORY, thread_id, limit)
        return [msgspec.convert(dict(row), Message) for row in rows]

    async def snapshot(self, run_id: UUID) -> RunSnapshot | None:
        async with self._db.connection() as connection:
            return _convert(await connection.fetchrow(SNAPSHOT, run_id), RunSnapshot)

    async def mark_running(self, run_id: UUID) -> None:
        async with self._db.connection() as connection:
            await connection.execute(MARK_RUNNING, run_id, self._lease_s)

    async def mark_first_token(self, run_id: UUID) -> None:
        async with self._db.connection() as connection:
            await connection.execute(MARK_FIRST_OUTPUT, run_id)

    async def save_partial(self, message_id: UUID, content: str) -> None:
        # Batched with every other run's partial reply; see db/partials.py.
        self._partials.save(message_id, content)

    async def finish_run(self, outcome: RunOutcome) -> bool:
        usage = outcome.usage
        # Priced here, where the usage row is written, so every way a run ends is priced the same.
        cost = self._prices.cost(outcome.model, usage)
        async with self._db.transaction() as connection:
            ended = await connection.fetchval(
                FINISH_RUN, outcome.run_id, outcome.status.value, outcome.status.message_status.value,
                outcome.content, outcome.error, outcome.model, outcome.provider,
                usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens, usage.reasoning_tokens,
                usage.total_tokens, usage.source, outcome.ttft_ms, outcome.latency_ms, outcome.finish_reason,
                cost, self._prices.version,
            )  # fmt: skip
            for hook in self._finish_hooks:
                try:
                    async with connection.transaction():  # a savepoint: a failed hook never undoes the end
                        await hook(connection, outcome)
                except Exception:
                    log.exception("a finish hook failed for run %s", outcome.run_id)
        return ended is not None

    async def run(self, user_id: str, run_id: UUID) -> Run | None:
        async with self._db.connection() as connection:
            return _convert(await connection.fetchrow(RUN_FOR_USER, run_id, user_id), Run)

    async def thread(self, user_id: str, thread_id: UUID) -> Thread | None:
        async with self._db.connection() as connection:
            return _convert(await connection.fetchrow(THREAD_FOR_USER, thread_id, user_id), Thread)

    async def create_thread(self, user_id: str, thread_id: UUID, agent: str) -> Thread | None:
        async with self._db.connection() as connection:
            return _convert(await connection.fetchrow(CREATE_THREAD, thread_id, user_id, agent), Thread)

    async def live_run(self, user_id: str, thread_id: UUID) -> UUID | None:
        async with self._db.connection() as connection:
            found: UUID | None = await connection.fetchval(LIVE_RUN_OF_USER, thread_id, user_id)
        return found

    async def agents(self) -> list[Agent]:
        async with self._db.connection() as connection:
            rows = await connection.fetch(ALL_AGENTS)
        return [msgspec.convert(dict(row), Agent) for row in rows]
