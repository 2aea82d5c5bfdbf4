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

# No connection could be made: the server is stopped (its socket is gone or refuses), shutting
# down, starting up, or full. Answered like a busy pool: 503 and Retry-After, never a 500.
UNREACHABLE = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
)
# A connection the pool handed out was lost while in use: the server went away under it.
LOST = (asyncpg.PostgresConnectionError, asyncpg.AdminShutdownError, asyncpg.CrashShutdownError)
DOWN_RETRY_S = 2


def _down() -> Unavailable:
    return Unavailable("The database is unavailable; try again shortly.", retry_after_s=DOWN_RETRY_S)


def _closed(connection: Connection) -> bool:
    try:
        return connection.is_closed()
    except asyncpg.InterfaceError:  # the pool has already taken back a connection that closed under us
        return True


class Database:
    def __init__(self, pool: asyncpg.Pool, *, acquire_timeout_s: float) -> None:
        self.pool = pool
        self._acquire_timeout_s = acquire_timeout_s

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Connection]:
        """A pooled connection; `Unavailable` (503) when none is free in time or the server is gone."""
        try:
            connection = await self.pool.acquire(timeout=self._acquire_timeout_s)
        except TimeoutError:
            raise Unavailable("The database is busy; try again shortly.", retry_after_s=1) from None
        except UNREACHABLE as error:
            raise _down() from error
        try:
            yield connection
        except LOST as error:
            raise _down() from error
        except asyncpg.InterfaceError as error:
            # Also raised for a misused connection; only a closed one means the server went away.
            if not _closed(connection):
                raise
            raise _down() from error
        finally:
            await self.pool.release(connection)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        async with self.connection() as connection, connection.transaction():
            yield connection
