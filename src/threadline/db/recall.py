"""Recall in Postgres: the nearest earlier messages of the caller, recorded on the run as its sources."""

from __future__ import annotations

import msgspec

from threadline.db.database import Connection, Database
from threadline.db.sql import load
from threadline.domain.memory import RecallQuery, Recollection

RECALL = load("recall.sql")
# SET LOCAL takes no parameters; set_config(..., true) is the same thing with them. Iterative scans
# (pgvector 0.8) keep walking the graph until enough rows pass the user and embedder filters. A plan
# per call, not a prepared statement's generic one: whether the HNSW graph or an exact scan of the
# user's own vectors is faster depends on how many vectors that user has, which only a custom plan
# sees (a generic plan measured 30 ms where the custom one takes 5).
TUNE_SCAN = """
    SELECT set_config('hnsw.ef_search', $1::int::text, true),
           set_config('hnsw.iterative_scan', 'relaxed_order', true),
           set_config('plan_cache_mode', 'force_custom_plan', true)
"""
RECORD_SOURCES = "UPDATE runs SET retrieved = $2 WHERE id = $1"


async def tune_vector_scan(connection: Connection, ef_search: int) -> None:
    """Inside a transaction: how wide the HNSW search is, for this transaction only."""
    await connection.execute(TUNE_SCAN, ef_search)


class PostgresRecall:
    """The `MemoryStore` port over asyncpg."""

    def __init__(self, database: Database) -> None:
        self._db = database

    async def recall(self, query: RecallQuery) -> list[Recollection]:
        async with self._db.transaction() as connection:
            await tune_vector_scan(connection, query.ef_search)
            rows = await connection.fetch(
                RECALL, query.user_id, query.thread_id, query.vector, query.embedder, query.window_seq,
                query.top_k, query.other_threads, query.min_score, query.thread_boost,
            )  # fmt: skip
            found = [msgspec.convert(dict(row), Recollection) for row in rows]
            if found:
                # The same Structs the `sources` event is made of, so a stream rebuilt from Postgres
                # repeats the live one byte for byte.
                sources = [msgspec.to_builtins(item.source()) for item in found]
                await connection.execute(RECORD_SOURCES, query.run_id, sources)
        return found
