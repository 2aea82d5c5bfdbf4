"""Threads as a user manages them: create, list and filter, read, change, delete, page through."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import asyncpg
import msgspec

from threadline.db.chat import THREAD_COLUMNS
from threadline.db.database import Connection, Database
from threadline.domain.errors import InvalidInput, NotFound, RunInProgress
from threadline.domain.lifecycle import check_transition
from threadline.domain.models import Message, Thread, ThreadStatus

MESSAGE_COLUMNS = (
    "id, thread_id, seq, role, content, status, run_id, metadata, created_at, completed_at, error, "
    "superseded_at"
)
# $1 user, $2 status, $3 agent, $4 LIKE pattern, $5 min messages, $6 created from, $7 created before.
THREAD_FILTER = r"""
    FROM threads t
    WHERE t.user_id = $1
      AND ($2::text IS NULL OR t.status = $2)
      AND ($3::text IS NULL OR t.agent = $3)
      AND ($4::text IS NULL OR t.title ILIKE $4 ESCAPE '\' OR EXISTS (
            SELECT 1 FROM messages m
            WHERE m.thread_id = t.id AND m.superseded_at IS NULL AND m.content ILIKE $4 ESCAPE '\'))
      AND t.message_count >= $5
      AND ($6::timestamptz IS NULL OR t.created_at >= $6)
      AND ($7::timestamptz IS NULL OR t.created_at < $7)
"""
COUNT_THREADS = f"SELECT count(*) {THREAD_FILTER}"
PAGE_THREADS = f"""
    SELECT {", ".join(f"t.{c.strip()}" for c in THREAD_COLUMNS.split(","))} {THREAD_FILTER}
    ORDER BY t.last_activity_at DESC, t.id DESC LIMIT $8 OFFSET $9
"""
INSERT_THREAD = f"""
    INSERT INTO threads (id, user_id, agent, title, metadata)
    VALUES ($1, $2, coalesce($3, (SELECT slug FROM agents WHERE is_default)), $4, $5)
    RETURNING {THREAD_COLUMNS}
"""
LATEST_ACTIVE = f"""
    SELECT {THREAD_COLUMNS} FROM threads WHERE user_id = $1 AND status = 'active'
    ORDER BY last_activity_at DESC LIMIT 1
"""
THREAD_FOR_USER = f"SELECT {THREAD_COLUMNS} FROM threads WHERE id = $1 AND user_id = $2"
THREAD_FOR_UPDATE = f"{THREAD_FOR_USER} FOR UPDATE"
# Reopening counts as activity, or the idle job would abandon a thread the moment it is reopened.
UPDATE_THREAD = f"""
    UPDATE threads SET title = $2, status = $3, metadata = $4, updated_at = now(),
        last_activity_at = CASE WHEN $3 = 'active' AND status <> 'active' THEN now() ELSE last_activity_at END
    WHERE id = $1
    RETURNING {THREAD_COLUMNS}
"""
LIVE_RUN = "SELECT id FROM runs WHERE thread_id = $1 AND status IN ('pending', 'running') LIMIT 1"
# Messages, runs and embeddings go with the thread (ON DELETE CASCADE); usage rows stay for
# accounting, their thread reference cleared (ON DELETE SET NULL).
DELETE_THREAD = "DELETE FROM threads WHERE id = $1"
LAST_MESSAGE = f"""
    SELECT {MESSAGE_COLUMNS} FROM messages WHERE thread_id = $1 AND superseded_at IS NULL
    ORDER BY seq DESC LIMIT 1
"""
THREAD_USAGE = """
    SELECT count(*) FILTER (WHERE purpose = 'run') AS runs,
           coalesce(sum(prompt_tokens), 0) AS prompt_tokens,
           coalesce(sum(completion_tokens), 0) AS completion_tokens,
           coalesce(sum(total_tokens), 0) AS total_tokens,
           coalesce(sum(cost_usd), 0) AS cost_usd
    FROM usage_events WHERE thread_id = $1
"""
COUNT_MESSAGES = "SELECT count(*) FROM messages WHERE thread_id = $1 AND ($2 OR superseded_at IS NULL)"
PAGE_MESSAGES = f"""
    SELECT {MESSAGE_COLUMNS} FROM messages WHERE thread_id = $1 AND ($2 OR superseded_at IS NULL)
    ORDER BY seq LIMIT $3 OFFSET $4
"""
RESERVED_METADATA = "client"


class ThreadFilter(msgspec.Struct, frozen=True, kw_only=True):
    user_id: str
    status: ThreadStatus | None = None
    agent: str | None = None
    search: str | None = None
    min_messages: int = 0
    created_from: datetime | None = None
    created_before: datetime | None = None


class ThreadUsage(msgspec.Struct, frozen=True, kw_only=True):
    runs: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost_usd: float


class ThreadDetail(msgspec.Struct, frozen=True, kw_only=True):
    thread: Thread
    last_message: Message | None
    usage: ThreadUsage


class ThreadChange(msgspec.Struct, frozen=True, kw_only=True):
    """A PATCH: `title` and `metadata` only when `set_title` / `metadata_patch` say so."""

    set_title: bool = False
    title: str | None = None
    status: ThreadStatus | None = None
    metadata_patch: dict[str, Any] | None = None
    # Repeated patches must not grow metadata past what a create may send.
    max_metadata_bytes: int = 16_384


def like_pattern(search: str) -> str:
    """`search` as a literal substring for ILIKE: its own %, _ and backslashes match themselves."""
    escaped = search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def merged_metadata(current: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """JSON merge patch, one level deep: a key set to null is removed. `client` is the server's."""
    if RESERVED_METADATA in patch:
        raise InvalidInput("`metadata.client` is recorded by the server and cannot be set.")
    merged = {**current, **patch}
    return {key: value for key, value in merged.items() if value is not None}


def _thread(record: asyncpg.Record | None) -> Thread | None:
    return None if record is None else msgspec.convert(dict(record), Thread)


def _message(record: asyncpg.Record) -> Message:
    return msgspec.convert(dict(record), Message)


class PostgresThreads:
    def __init__(self, database: Database) -> None:
        self._db = database

    async def create(
        self, user_id: str, *, agent: str | None, title: str | None, metadata: dict[str, Any]
    ) -> Thread:
        try:
            async with self._db.connection() as connection:
                record = await connection.fetchrow(
                    INSERT_THREAD, uuid.uuid4(), user_id, agent, title, metadata
                )
        except asyncpg.ForeignKeyViolationError:
            raise InvalidInput(f"There is no agent {agent!r}.") from None
        thread = _thread(record)
        assert thread is not None
        return thread

    async def page(self, where: ThreadFilter, *, page: int, per_page: int) -> tuple[list[Thread], int]:
        pattern = like_pattern(where.search) if where.search else None
        status = where.status.value if where.status else None
        arguments = (where.user_id, status, where.agent, pattern, where.min_messages,
                     where.created_from, where.created_before)  # fmt: skip
        async with self._db.connection() as connection:
            total: int = await connection.fetchval(COUNT_THREADS, *arguments)
            rows = await connection.fetch(PAGE_THREADS, *arguments, per_page, (page - 1) * per_page)
        return [msgspec.convert(dict(row), Thread) for row in rows], total

    async def latest_active(self, user_id: str) -> Thread | None:
        async with self._db.connection() as connection:
            return _thread(await connection.fetchrow(LATEST_ACTIVE, user_id))

    async def get(self, user_id: str, thread_id: UUID) -> Thread:
        async with self._db.connection() as connection:
            return await self._get(connection, user_id, thread_id)

    async def detail(self, user_id: str, thread_id: UUID) -> ThreadDetail:
        async with self._db.connection() as connection:
            thread = await self._get(connection, user_id, thread_id)
            last = await connection.fetchrow(LAST_MESSAGE, thread_id)
            usage = await connection.fetchrow(THREAD_USAGE, thread_id)
        assert usage is not None
        totals = {**dict(usage), "cost_usd": float(usage["cost_usd"] or Decimal(0))}
        return ThreadDetail(
            thread=thread,
            last_message=None if last is None else _message(last),
            usage=msgspec.convert(totals, ThreadUsage),
        )

    async def change(self, user_id: str, thread_id: UUID, change: ThreadChange) -> Thread:
        async with self._db.transaction() as connection:
            thread = await self._get(connection, user_id, thread_id, lock=True)
            status = change.status or thread.status
            check_transition(thread.status, status)
            title = change.title if change.set_title else thread.title
            metadata = thread.metadata
            if change.metadata_patch is not None:
                metadata = merged_metadata(thread.metadata, change.metadata_patch)
                if len(msgspec.json.encode(metadata)) > change.max_metadata_bytes:
                    raise InvalidInput(f"`metadata` would grow past {change.max_metadata_bytes} bytes.")
            updated = _thread(
                await connection.fetchrow(UPDATE_THREAD, thread_id, title, status.value, metadata)
            )
        assert updated is not None
        return updated

    async def delete(self, user_id: str, thread_id: UUID) -> None:
        async with self._db.transaction() as connection:
            await self._get(connection, user_id, thread_id, lock=True)
            if (run_id := await connection.fetchval(LIVE_RUN, thread_id)) is not None:
                raise RunInProgress(
                    "A reply is still being generated in this thread; cancel it first.", run_id=run_id
                )
            await connection.execute(DELETE_THREAD, thread_id)

    async def messages(
        self, user_id: str, thread_id: UUID, *, page: int, per_page: int | None, include_superseded: bool
    ) -> tuple[Thread, list[Message], int]:
        """A page of the thread's messages in `seq` order; `per_page=None` is all of them."""
        offset = (page - 1) * per_page if per_page else 0
        async with self._db.connection() as connection:
            thread = await self._get(connection, user_id, thread_id)
            total: int = await connection.fetchval(COUNT_MESSAGES, thread_id, include_superseded)
            rows = await connection.fetch(PAGE_MESSAGES, thread_id, include_superseded, per_page, offset)
        return thread, [_message(row) for row in rows], total

    async def _get(
        self, connection: Connection, user_id: str, thread_id: UUID, *, lock: bool = False
    ) -> Thread:
        thread = _thread(
            await connection.fetchrow(THREAD_FOR_UPDATE if lock else THREAD_FOR_USER, thread_id, user_id)
        )
        if thread is None:
            raise NotFound("Thread not found.")
        return thread
