"""Connections and transactions from the pool, each acquired with a timeout."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import asyncpg

from threadline.domain.errors import Unavailable

if TYPE_CHECKING:
    Connection = asyncpg.pool.PoolConnectionProxy[asyncpg.Record]
else:
    Connection = asyncpg.pool.PoolConnectionProxy


class Database:
    def __init__(self, pool: asyncpg.Pool, *, acquire_timeout_s: float) -> None:
        self.pool = pool
        self._acquire_timeout_s = acquire_timeout_s

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Connection]:
        try:
            connection = await self.pool.acquire(timeout=self._acquire_timeout_s)
        except TimeoutError:
            raise Unavailable("The database is busy; try again shortly.", retry_after_s=1) from None
        try:
            yield connection
        finally:
            await self.pool.release(connection)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        async with self.connection() as connection, connection.transaction():
            yield connection
