"""The embedding pipeline: finished messages get vectors in the background, in batches."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from uuid import UUID

from threadline.domain.memory import PendingMessage
from threadline.ports import Embedder, EmbeddingStore
from threadline.service.memory import MAX_EMBEDDED_CHARS

log = logging.getLogger("threadline.embeddings")


class EmbeddingPipeline:
    def __init__(self, *, embedder: Embedder, store: EmbeddingStore, batch_size: int) -> None:
        self._embedder = embedder
        self._store = store
        self._batch_size = batch_size

    @property
    def embedder(self) -> Embedder:
        return self._embedder

    async def embed_messages(self, message_ids: Sequence[UUID]) -> int:
        """Embed those of `message_ids` that lack a vector from this embedder (a retried job is a no-op)."""
        pending = await self._store.unembedded(message_ids, self._embedder.name)
        return await self.embed(pending)

    async def backfill(self, limit: int) -> int:
        """Embed up to `limit` finished messages that never got a vector (a lost job costs nothing)."""
        done = 0
        while done < limit:
            batch = await self._store.backlog(min(self._batch_size, limit - done))
            if not batch:
                break
            done += await self.embed(batch)
            if len(batch) < self._batch_size:
                break
        if done:
            log.info("backfill embedded %d message(s)", done)
        return done

    async def embed(self, messages: Sequence[PendingMessage]) -> int:
        stored = 0
        for start in range(0, len(messages), self._batch_size):
            batch = messages[start : start + self._batch_size]
            vectors = await self._embedder.embed([m.content[:MAX_EMBEDDED_CHARS] for m in batch])
            stored += await self._store.save(
                self._embedder.name, [(m.id, vector) for m, vector in zip(batch, vectors, strict=True)]
            )
        return stored
