"""`PartialWriter`: the newest partial text of every streaming reply, written in one statement."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from uuid import UUID

import asyncpg
import pytest

from threadline.db.database import Database
from threadline.db.partials import PartialWriter


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2, timeout=10)
    assert pool is not None
    yield Database(pool, acquire_timeout_s=5)
    await pool.close()


async def reply(db: asyncpg.Pool, user: str, seq: int, status: str, thread_id: UUID) -> UUID:
    message_id = uuid.uuid4()
    await db.execute(
        "INSERT INTO messages (id, thread_id, user_id, seq, role, content, status)"
        " VALUES ($1, $2, $3, $4, 'assistant', '', $5)",
        message_id, thread_id, user, seq, status,
    )  # fmt: skip
    return message_id


async def content(db: asyncpg.Pool, message_id: UUID) -> str:
    found: str = await db.fetchval("SELECT content FROM messages WHERE id = $1", message_id)
    return found


async def test_the_newest_text_of_each_reply_is_written_and_a_finished_reply_is_left_alone(
    db: asyncpg.Pool, database: Database, user: str
) -> None:
    thread_id = uuid.uuid4()
    await db.execute("INSERT INTO threads (id, user_id, agent) VALUES ($1, $2, 'default')", thread_id, user)
    first = await reply(db, user, 1, "streaming", thread_id)
    second = await reply(db, user, 2, "streaming", thread_id)
    finished = await reply(db, user, 3, "completed", thread_id)
    writer = PartialWriter(database, interval_s=10)
    writer.save(first, "Hel")
    writer.save(first, "Hello")
    writer.save(second, "Wor")
    writer.save(finished, "late")
    await writer.flush()
    assert [await content(db, m) for m in (first, second, finished)] == ["Hello", "Wor", ""]


async def test_saves_are_written_by_a_task_that_ends_when_nothing_is_pending(
    db: asyncpg.Pool, database: Database, user: str
) -> None:
    thread_id = uuid.uuid4()
    await db.execute("INSERT INTO threads (id, user_id, agent) VALUES ($1, $2, 'default')", thread_id, user)
    message_id = await reply(db, user, 1, "streaming", thread_id)
    writer = PartialWriter(database, interval_s=0.01)
    writer.save(message_id, "partial")
    for _ in range(100):
        if await content(db, message_id) == "partial":
            break
        await asyncio.sleep(0.02)
    assert await content(db, message_id) == "partial"
