"""Message vectors in Postgres: which messages still need one, storing them, and the column's dimension.

A message is embeddable once it is finished: every user message, and an assistant reply whose run
ended (completed, or cut short with text: interrupted, cancelled, failed mid-way). Superseded
versions, empty replies and system messages are not embedded.
"""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

import asyncpg
import msgspec
from pgvector import Vector

from threadline.db.database import Connection, Database
from threadline.domain.memory import PendingMessage
from threadline.ports import Jobs, RunOutcome

EMBED_JOB = "embed_messages"
RUN_MESSAGES = "SELECT user_message_id, assistant_message_id FROM runs WHERE id = $1"

EMBEDDABLE = (
    "m.role IN ('user', 'assistant') AND m.content <> '' AND m.superseded_at IS NULL "
    "AND m.status IS DISTINCT FROM 'streaming'"
)
UNEMBEDDED = f"""
    SELECT m.id, m.content FROM messages m
    LEFT JOIN message_embeddings e ON e.message_id = m.id
    WHERE m.id = ANY($1::uuid[]) AND {EMBEDDABLE} AND e.embedder IS DISTINCT FROM $2
"""
# Messages whose job was lost. Recent ones are left to their job; a nested loop over the primary key
# of message_embeddings stops as soon as `limit` are found.
BACKLOG = f"""
    SELECT m.id, m.content FROM messages m
    WHERE {EMBEDDABLE} AND m.created_at < now() - interval '1 minute'
      AND NOT EXISTS (SELECT 1 FROM message_embeddings e WHERE e.message_id = m.id)
    LIMIT $1
"""
# Every message that has no vector from embedder $1, after message id $2 (a resumable walk by id).
STALE_AFTER = f"""
    SELECT m.id, m.content FROM messages m
    LEFT JOIN message_embeddings e ON e.message_id = m.id
    WHERE {EMBEDDABLE} AND m.id > $2 AND e.embedder IS DISTINCT FROM $1
    ORDER BY m.id LIMIT $3
"""
COUNT_STALE = f"""
    SELECT count(*) FROM messages m
    LEFT JOIN message_embeddings e ON e.message_id = m.id
    WHERE {EMBEDDABLE} AND e.embedder IS DISTINCT FROM $1
"""
# The thread and user come from the message: a vector can never be filed under another user.
SAVE = """
    INSERT INTO message_embeddings (message_id, user_id, thread_id, embedder, embedding)
    SELECT m.id, m.user_id, m.thread_id, $2, v.embedding
    FROM unnest($1::uuid[], $3::vector[]) AS v(message_id, embedding)
    JOIN messages m ON m.id = v.message_id
    ON CONFLICT (message_id) DO UPDATE
    SET embedder = excluded.embedder, embedding = excluded.embedding, created_at = now()
"""
COLUMN_DIM = """
    SELECT atttypmod FROM pg_attribute
    WHERE attrelid = 'message_embeddings'::regclass AND attname = 'embedding' AND NOT attisdropped
"""
INDEX_EXISTS = "SELECT to_regclass('message_embeddings_hnsw') IS NOT NULL"
DROP_INDEX = "DROP INDEX IF EXISTS message_embeddings_hnsw"
CREATE_INDEX = (
    "CREATE INDEX IF NOT EXISTS message_embeddings_hnsw ON message_embeddings "
    "USING hnsw (embedding vector_cosine_ops)"
)
CLEAR_VECTORS = "DELETE FROM message_embeddings"
# The dimension is a type modifier, and DDL takes no parameters: it is an int checked by the caller.
RETYPE = "ALTER TABLE message_embeddings ALTER COLUMN embedding TYPE vector({dim})"
INDEX_BUILD_MEMORY = "SET LOCAL maintenance_work_mem = '512MB'"


class EmbedOnFinish:
    """A finish hook: a run's question and reply are queued for embedding with the run's end."""

    def __init__(self, jobs: Jobs) -> None:
        self._jobs = jobs

    async def __call__(self, connection: Connection, outcome: RunOutcome) -> None:
        row = await connection.fetchrow(RUN_MESSAGES, outcome.run_id)
        if row is None:
            return
        ids = [row["user_message_id"], *([row["assistant_message_id"]] if outcome.content else [])]
        await self._jobs.enqueue(
            EMBED_JOB,
            {"message_ids": [str(message_id) for message_id in ids]},
            connection=connection,
            dedupe_key=f"embed:{outcome.run_id}",
        )


def _pending(rows: list[asyncpg.Record]) -> list[PendingMessage]:
    return [msgspec.convert(dict(row), PendingMessage) for row in rows]


class PostgresEmbeddings:
    """The `EmbeddingStore` port, and what `threadline reembed` needs to change embedders."""

    def __init__(self, database: Database) -> None:
        self._db = database

    async def unembedded(self, message_ids: Sequence[UUID], embedder: str) -> list[PendingMessage]:
        async with self._db.connection() as connection:
            return _pending(await connection.fetch(UNEMBEDDED, list(message_ids), embedder))

    async def backlog(self, limit: int) -> list[PendingMessage]:
        async with self._db.connection() as connection:
            return _pending(await connection.fetch(BACKLOG, limit))

    async def save(self, embedder: str, vectors: Sequence[tuple[UUID, list[float]]]) -> int:
        if not vectors:
            return 0
        ids = [message_id for message_id, _ in vectors]
        # As Vector objects: asyncpg would read a list of lists as a two-dimensional array.
        embeddings = [Vector(vector) for _, vector in vectors]
        async with self._db.connection() as connection:
            status = await connection.execute(SAVE, ids, embedder, embeddings)
        return int(status.rsplit(" ", 1)[-1])

    async def stale_after(self, embedder: str, after: UUID, limit: int) -> list[PendingMessage]:
        async with self._db.connection() as connection:
            return _pending(await connection.fetch(STALE_AFTER, embedder, after, limit))

    async def count_stale(self, embedder: str) -> int:
        async with self._db.connection() as connection:
            count: int = await connection.fetchval(COUNT_STALE, embedder)
        return count

    async def column_dim(self) -> int:
        async with self._db.connection() as connection:
            dim: int = await connection.fetchval(COLUMN_DIM)
        return dim

    async def index_exists(self) -> bool:
        async with self._db.connection() as connection:
            exists: bool = await connection.fetchval(INDEX_EXISTS)
        return exists

    async def change_dim(self, dim: int) -> None:
        """Drop every vector (they have the old dimension), retype the column, drop the index: the
        index is rebuilt by `build_index` once the vectors are back, which is much faster than
        inserting them into a live HNSW graph."""
        if not 0 < int(dim) <= 16_000:
            raise ValueError(f"not a vector dimension: {dim!r}")
        async with self._db.transaction() as connection:
            await connection.execute(DROP_INDEX)
            await connection.execute(CLEAR_VECTORS)
            await connection.execute(RETYPE.format(dim=int(dim)))

    async def build_index(self) -> None:
        async with self._db.transaction() as connection:
            await connection.execute(INDEX_BUILD_MEMORY)
            await connection.execute(CREATE_INDEX)
