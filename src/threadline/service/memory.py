"""What a run remembers: the question embedded, the caller's nearest earlier messages recalled."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from threadline.domain.memory import RecallQuery, Recollection
from threadline.domain.models import Message, Role, Run
from threadline.ports import Embedder, MemoryStore
from threadline.settings import MemorySettings

log = logging.getLogger("threadline.memory")
# What of a long message is embedded: its gist is in its beginning, and every embedder has a limit.
MAX_EMBEDDED_CHARS = 8_000


class Recaller:
    """Recall for runs. Memory helps a reply but never blocks one: an embedder or a query that fails
    or takes longer than `recall_timeout_s` costs the run its memory, not its reply."""

    def __init__(self, *, embedder: Embedder, store: MemoryStore, settings: MemorySettings) -> None:
        self._embedder = embedder
        self._store = store
        self._settings = settings

    async def recall(self, run: Run, history: Sequence[Message]) -> list[Recollection]:
        """The caller's earlier messages most like the run's question, outside the recent `history`."""
        settings = self._settings
        question = next((m for m in reversed(history) if m.role is Role.USER), None)
        if settings.top_k == 0 or question is None:
            return []
        try:
            async with asyncio.timeout(settings.recall_timeout_s):
                [vector] = await self._embedder.embed([question.content[:MAX_EMBEDDED_CHARS]])
                return await self._store.recall(
                    RecallQuery(
                        user_id=run.user_id,
                        thread_id=run.thread_id,
                        run_id=run.id,
                        vector=vector,
                        embedder=self._embedder.name,
                        window_seq=min(message.seq for message in history),
                        top_k=settings.top_k,
                        other_threads=settings.scope == "user",
                        min_score=settings.min_score,
                        thread_boost=settings.thread_boost,
                        ef_search=settings.ef_search,
                    )
                )
        except TimeoutError:
            log.warning(
                "run %s goes without memory: recall took over %.1fs", run.id, settings.recall_timeout_s
            )
        except Exception:
            log.exception("run %s goes without memory: recall failed", run.id)
        return []
