"""`MemoryEventLog`: the event log for a single process, kept in memory."""

from __future__ import annotations

import asyncio
import bisect
from collections.abc import Sequence
from uuid import UUID

from threadline.domain.events import Frame
from threadline.ports import Batch, RunAppend


class _RunFrames:
    __slots__ = ("changed", "finished", "frames", "ids")

    def __init__(self) -> None:
        self.frames: list[Frame] = []
        self.ids: list[int] = []
        self.changed = asyncio.Event()
        self.finished = False


class MemoryEventLog:
    """The `EventLog` port for one process; readers in other processes need `RedisEventLog`."""

    def __init__(self, *, retention_s: float = 600.0) -> None:
        self._runs: dict[UUID, _RunFrames] = {}
        self._retention_s = retention_s

    async def append(self, run_id: UUID, frame: Frame) -> None:
        run = self._runs.setdefault(run_id, _RunFrames())
        run.frames.append(frame)
        run.ids.append(frame.id)
        # The final frame ends the run for readers, as `finish` does, before `finish` is called.
        run.finished = run.finished or frame.terminal
        # Wake every waiting reader, then give the next ones a fresh event to wait on.
        run.changed.set()
        run.changed = asyncio.Event()

    async def append_runs(self, appends: Sequence[RunAppend]) -> list[bool]:
        for append in appends:
            for frame in append.frames:
                await self.append(append.run_id, frame)
            if append.finished:
                await self.finish(append.run_id)
        return [True] * len(appends)

    async def read(self, run_id: UUID, after: int, wait_s: float) -> Batch | None:
        run = self._runs.get(run_id)
        if run is None:
            return None
        start = bisect.bisect_right(run.ids, after)
        if start == len(run.frames) and not run.finished:
            try:
                await asyncio.wait_for(run.changed.wait(), wait_s)
            except TimeoutError:
                return Batch([], ended=False)
            start = bisect.bisect_right(run.ids, after)
        return Batch(run.frames[start:], ended=run.finished)

    async def finish(self, run_id: UUID) -> None:
        run = self._runs.get(run_id)
        if run is None:
            return
        run.finished = True
        run.changed.set()
        asyncio.get_running_loop().call_later(self._retention_s, self._runs.pop, run_id, None)
