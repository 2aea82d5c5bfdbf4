"""Partial replies of every running run saved together: one UPDATE per tick instead of one per run."""

from __future__ import annotations

import asyncio
import logging
from uuid import UUID

from threadline.db.database import Database

log = logging.getLogger("threadline.runs")

# Only a reply still streaming takes a partial save: a late one never overwrites the final text.
SAVE_PARTIALS = """
    UPDATE messages AS m SET content = p.content
    FROM unnest($1::uuid[], $2::text[]) AS p(id, content)
    WHERE m.id = p.id AND m.status = 'streaming'
"""


class PartialWriter:
    """Coalesces partial-reply saves: the newest text of each message, written in one statement per tick.

    Profiled at 1,000 streams, one UPDATE per run every 250 ms (4,000 a second) exhausted the pool
    and made new requests fail with 503. A run's `save` returns at once; a task that exists only
    while saves are pending writes them every `interval_s`. Each save carries the whole reply so
    far, so a failed batch is made good by the run's next save, and the run's end writes the final
    text in its own transaction regardless.
    """

    def __init__(self, database: Database, *, interval_s: float = 0.05) -> None:
        self._db = database
        self._interval_s = interval_s
        self._pending: dict[UUID, str] = {}
        self._task: asyncio.Task[None] | None = None

    def save(self, message_id: UUID, content: str) -> None:
        self._pending[message_id] = content
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._write_while_pending())

    async def flush(self) -> None:
        """Write what is pending now (tests, shutdown)."""
        batch, self._pending = self._pending, {}
        if not batch:
            return
        try:
            async with self._db.connection() as connection:
                await connection.execute(SAVE_PARTIALS, list(batch), list(batch.values()))
        except Exception as error:
            log.warning(
                "could not save %d partial replies (%r); their next save carries them", len(batch), error
            )

    async def _write_while_pending(self) -> None:
        while self._pending:
            await asyncio.sleep(self._interval_s)
            await self.flush()
