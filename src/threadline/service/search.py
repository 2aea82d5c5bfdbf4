"""`GET /search`: the caller's messages by words and by meaning, in one ranked list."""

from __future__ import annotations

import asyncio
import logging
from uuid import UUID

from threadline.domain.errors import InvalidInput
from threadline.domain.memory import SearchHit, SearchQuery
from threadline.ports import Embedder, MessageSearch
from threadline.settings import MemorySettings

log = logging.getLogger("threadline.search")
MAX_QUERY_CHARS = 1_000
MAX_LIMIT = 50
# Each arm brings this many candidates (at least the page size) to the fusion.
CANDIDATES = 50


class SearchService:
    def __init__(self, *, embedder: Embedder, search: MessageSearch, settings: MemorySettings) -> None:
        self._embedder = embedder
        self._search = search
        self._settings = settings

    async def search(self, user_id: str, text: str, *, thread_id: UUID | None, limit: int) -> list[SearchHit]:
        text = text.strip()
        if not text:
            raise InvalidInput("`q` must not be empty.")
        if len(text) > MAX_QUERY_CHARS:
            raise InvalidInput(f"`q` has {len(text)} characters; the limit is {MAX_QUERY_CHARS}.")
        if "\x00" in text:
            raise InvalidInput("`q` must not contain NUL characters.")
        if not 1 <= limit <= MAX_LIMIT:
            raise InvalidInput(f"`limit` must be between 1 and {MAX_LIMIT}.")
        return await self._search.search(
            SearchQuery(
                user_id=user_id,
                text=text,
                vector=await self._vector(text),
                embedder=self._embedder.name,
                thread_id=thread_id,
                limit=limit,
                candidates=max(CANDIDATES, limit),
                min_score=self._settings.min_score,
                ef_search=self._settings.ef_search,
            )
        )

    async def _vector(self, text: str) -> list[float] | None:
        """The query's vector, or None (full text only) when the embedder fails or is slow."""
        try:
            async with asyncio.timeout(self._settings.recall_timeout_s):
                [vector] = await self._embedder.embed([text])
        except Exception as error:
            log.warning("search falls back to full text: %s: %s", type(error).__name__, error)
            return None
        return vector
