"""Hybrid message search in Postgres: full text and vectors over the caller's messages, fused by rank."""

from __future__ import annotations

import html

import msgspec

from threadline.db.database import Database
from threadline.db.recall import tune_vector_scan
from threadline.db.sql import load
from threadline.domain.memory import SearchHit, SearchQuery

SEARCH = load("search.sql")
# What search.sql puts around each match (Unicode private-use characters, stripped from the text first).
MATCH_START, MATCH_END = "\ue000", "\ue001"


def highlighted(snippet: str) -> str:
    """The snippet as safe HTML: the message's text escaped, its matches in <mark>."""
    return html.escape(snippet, quote=False).replace(MATCH_START, "<mark>").replace(MATCH_END, "</mark>")


class PostgresSearch:
    """The `MessageSearch` port over asyncpg."""

    def __init__(self, database: Database) -> None:
        self._db = database

    async def search(self, query: SearchQuery) -> list[SearchHit]:
        async with self._db.transaction() as connection:
            await tune_vector_scan(connection, query.ef_search)
            rows = await connection.fetch(
                SEARCH, query.user_id, query.text, query.vector, query.embedder, query.thread_id,
                query.limit, query.candidates, query.min_score,
            )  # fmt: skip
        return [
            msgspec.convert({**dict(row), "snippet": highlighted(row["snippet"])}, SearchHit) for row in rows
        ]
