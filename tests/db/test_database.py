"""`Database`: a busy, stopped or vanished Postgres is `Unavailable` (503 with Retry-After), not a 500."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager

import asyncpg
import pytest

from threadline.db.database import DOWN_RETRY_S, Connection, Database
from threadline.domain.errors import Unavailable


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    pool = await asyncpg.create_pool(database_url, min_size=0, max_size=2, timeout=10)
    assert pool is not None
    yield Database(pool, acquire_timeout_s=5)
    await pool.close()


async def test_a_server_that_is_not_there_is_unavailable_at_once(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    # The URL of an embedded server that has stopped: its socket directory holds no socket.
    gone = tmp_path_factory.mktemp("stopped-postgres")
    url = f"postgresql://postgres@/threadline?host={gone}&port=5432"
    pool = await asyncpg.create_pool(url, min_size=0, max_size=1, timeout=10)
    assert pool is not None
    try:
        started = time.monotonic()
        with pytest.raises(Unavailable) as refused:
            async with Database(pool, acquire_timeout_s=5).connection():
                pass
        assert time.monotonic() - started < 2.0  # not held until the acquire timeout
        assert refused.value.retry_after_s == DOWN_RETRY_S
    finally:
        await pool.close()


async def _lose_connection_in(opened: AbstractAsyncContextManager[Connection], db: asyncpg.Pool) -> None:
    async with opened as connection:
        pid = await connection.fetchval("SELECT pg_backend_pid()")
        # What a stopping server does to every session: terminate it.
        assert await db.fetchval("SELECT pg_terminate_backend($1, 5000)", pid)
        await connection.fetchval("SELECT 1")


@pytest.mark.parametrize("within", ["connection", "transaction"])
async def test_a_connection_lost_mid_use_is_unavailable(
    database: Database, db: asyncpg.Pool, within: str
) -> None:
    opened = database.connection() if within == "connection" else database.transaction()
    with pytest.raises(Unavailable):
        await _lose_connection_in(opened, db)
    # The pool replaces the lost connection: the next caller is served.
    async with database.connection() as connection:
        assert await connection.fetchval("SELECT 1") == 1


async def test_errors_that_are_not_a_lost_server_stay_what_they_are(database: Database) -> None:
    with pytest.raises(asyncpg.DivisionByZeroError):
        async with database.connection() as connection:
            await connection.fetchval("SELECT 1 / 0")
    with pytest.raises(asyncpg.InterfaceError):
        async with database.connection() as connection:
            await connection.fetchval("SELECT $1::int", 1, 2)
