"""Migrations: the schema is at head, re-running is a no-op, and a server without pgvector is named."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from threadline.db import migrate
from threadline.lifespan import EMBEDDING_DIM


async def test_the_schema_is_at_head_and_upgrading_again_changes_nothing(
    database_url: str, db: asyncpg.Pool
) -> None:
    before = await db.fetchval("SELECT version_num FROM alembic_version")
    await asyncio.to_thread(migrate.upgrade, database_url, embedding_dim=EMBEDDING_DIM)
    assert await db.fetchval("SELECT version_num FROM alembic_version") == before
    tables = {
        r["tablename"] for r in await db.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    }
    assert {
        "threads",
        "messages",
        "runs",
        "usage_events",
        "user_usage",
        "message_embeddings",
        "agents",
    } <= tables
    index = await db.fetchval("SELECT indexdef FROM pg_indexes WHERE indexname = 'message_embeddings_hnsw'")
    assert "hnsw" in index
    assert "vector_cosine_ops" in index


async def test_a_server_without_the_extension_fails_with_its_name(database_url: str) -> None:
    await migrate.check_pgvector(database_url)
    with pytest.raises(migrate.MissingExtension, match="'no_such_extension' extension"):
        await migrate.check_pgvector(database_url, extension="no_such_extension")
