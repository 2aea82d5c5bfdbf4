"""The asyncpg pool: pgvector's codec on every connection, JSON as msgspec, timeouts everywhere."""

from __future__ import annotations

import asyncpg
import msgspec
from pgvector.asyncpg import register_vector

from threadline.settings import DatabaseSettings

Pool = asyncpg.Pool


async def _init_connection(connection: asyncpg.Connection) -> None:
    await register_vector(connection)
    for name in ("json", "jsonb"):
        await connection.set_type_codec(
            name, encoder=_encode_json, decoder=msgspec.json.decode, schema="pg_catalog"
        )


async def _keep_session(connection: asyncpg.Connection) -> None:
    """Release without asyncpg's reset query (advisory unlock, CLOSE ALL, UNLISTEN, RESET ALL).

    That query was a second round trip for every pooled query: 4% of the server's CPU at 50 streams
    in a py-spy profile (`make bench`). Threadline keeps no session state: its advisory locks are
    transaction-scoped, its settings `set_config(..., true)`, and it never LISTENs on pooled
    connections. asyncpg still rolls back a
    transaction left open before calling this.
    """


def _encode_json(value: object) -> str:
    return msgspec.json.encode(value).decode()


async def create_pool(database_url: str, settings: DatabaseSettings) -> Pool:
    pool = await asyncpg.create_pool(
        database_url,
        min_size=min(settings.pool_min, settings.pool_max),
        max_size=settings.pool_max,
        command_timeout=settings.command_timeout_s,
        timeout=settings.acquire_timeout_s,
        init=_init_connection,
        reset=_keep_session,
    )
    assert pool is not None
    return pool
