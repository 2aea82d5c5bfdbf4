"""Reading and clearing a user's chat history, and the summary of their sessions."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import msgspec

from threadline.db.database import Database
from threadline.domain.errors import NotFound, RunInProgress
from threadline.domain.models import Message

HISTORY_THREAD = """
    SELECT id, message_count FROM threads
    WHERE user_id = $1 AND ($2::uuid IS NULL AND status = 'active' OR id = $2)
    ORDER BY last_activity_at DESC LIMIT 1
"""
RECENT_MESSAGES = """
    SELECT id, thread_id, seq, role, content, status, run_id, metadata, created_at, completed_at, error
    FROM (
        SELECT * FROM messages WHERE thread_id = $1 AND superseded_at IS NULL
        ORDER BY seq DESC LIMIT $2
    ) recent ORDER BY seq
"""
LOCK_THREAD = "SELECT id FROM threads WHERE user_id = $1 AND id = $2 FOR UPDATE"
LIVE_RUN = "SELECT id FROM runs WHERE thread_id = $1 AND status IN ('pending', 'running') LIMIT 1"
DELETE_RUNS = "DELETE FROM runs WHERE thread_id = $1"
DELETE_MESSAGES = "DELETE FROM messages WHERE thread_id = $1"
RESET_THREAD = """
    UPDATE threads SET message_count = 0, next_seq = 1, context_summary = NULL, summary_through_seq = 0,
                       updated_at = now(), last_activity_at = now()
    WHERE id = $1
"""
SESSIONS = """
    SELECT count(*) AS total_threads,
           count(*) FILTER (WHERE status = 'active') AS active_threads,
           coalesce(sum(message_count), 0) AS total_messages,
           min(created_at) AS session_start,
           max(last_activity_at) AS last_activity,
           (SELECT id FROM threads WHERE user_id = $1 AND status = 'active'
            ORDER BY last_activity_at DESC LIMIT 1) AS thread_id,
           coalesce((SELECT total_tokens FROM user_usage WHERE user_id = $1), 0) AS total_tokens_used
    FROM threads WHERE user_id = $1
"""


class History(msgspec.Struct, frozen=True, kw_only=True):
    thread_id: UUID | None
    message_count: int
    messages: list[Message]


class Sessions(msgspec.Struct, frozen=True, kw_only=True):
    user_id: str
    thread_id: UUID | None
    total_messages: int
    total_tokens_used: int
    session_start: datetime | None
    last_activity: datetime | None
    total_threads: int
    active_threads: int


class PostgresHistory:
    def __init__(self, database: Database) -> None:
        self._db = database

    async def history(self, user_id: str, thread_id: UUID | None, limit: int) -> History:
        async with self._db.connection() as connection:
            thread = await connection.fetchrow(HISTORY_THREAD, user_id, thread_id)
            if thread is None:
                if thread_id is not None:
                    raise NotFound("Thread not found.")
                return History(thread_id=None, message_count=0, messages=[])
            rows = await connection.fetch(RECENT_MESSAGES, thread["id"], limit)
        messages = [msgspec.convert(dict(row), Message) for row in rows]
        return History(thread_id=thread["id"], message_count=thread["message_count"], messages=messages)

    async def clear(self, user_id: str, thread_id: UUID | None) -> UUID | None:
        async with self._db.transaction() as connection:
            target = await connection.fetchrow(HISTORY_THREAD, user_id, thread_id)
            if target is None:
                if thread_id is not None:
                    raise NotFound("Thread not found.")
                return None
            await connection.execute(LOCK_THREAD, user_id, target["id"])
            if (live := await connection.fetchval(LIVE_RUN, target["id"])) is not None:
                raise RunInProgress(
                    "A reply is still being generated in this thread; cancel it first.", run_id=live
                )
            await connection.execute(DELETE_MESSAGES, target["id"])
            await connection.execute(DELETE_RUNS, target["id"])
            await connection.execute(RESET_THREAD, target["id"])
            thread: UUID = target["id"]
            return thread

    async def sessions(self, user_id: str) -> Sessions:
        async with self._db.connection() as connection:
            row = await connection.fetchrow(SESSIONS, user_id)
        assert row is not None
        return msgspec.convert({"user_id": user_id, **dict(row)}, Sessions)
