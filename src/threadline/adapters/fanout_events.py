"""`FanoutEventLog`: runs this process produces are read from memory here, mirrored to a shared log."""

from __future__ import annotations

import asyncio
import logging
from uuid import UUID

from threadline.adapters.memory_events import MemoryEventLog
from threadline.domain.events import START_ID, Frame
from threadline.ports import Batch, EventLog

log = logging.getLogger("threadline.events")


class FanoutEventLog:
    """The `EventLog` port over a shared log (Redis), with an in-process copy of the runs appended here.

    Measured at 50 to 1,000 streams on one worker: following a run through Redis cost three round
    trips per token per reader (XLEN + XRANGE, then XREAD BLOCK again), the largest share of the
    server's CPU. A reader in the process that produces the run now waits on an in-memory event
    instead; readers in other processes still read the shared log, which gets every frame.

    The shared log is a mirror: if an append to it fails (Redis down or restarted), that run stops
    being mirrored, so no stream with a hole appears there, and the run goes on for local readers.
    Other processes then find no stream and rebuild it from Postgres, as for any lost stream.
    Only runs whose first frame was appended here are held, and only up to `max_local_frames`:
    anything else is read from the shared log.
    """

    def __init__(
        self, shared: EventLog, *, local_retention_s: float = 60.0, max_local_frames: int = 10_000
    ) -> None:
        self._shared = shared
        self._local = MemoryEventLog(retention_s=local_retention_s)
        self._retention_s = local_retention_s
        self._max_local_frames = max_local_frames
        self._frames: dict[UUID, int] = {}  # frames held in memory, per local run
        self._shared_only: set[UUID] = set()  # local runs past the cap
        self._unmirrored: set[UUID] = set()

    def __contains__(self, run_id: object) -> bool:
        return run_id in self._frames

    async def append(self, run_id: UUID, frame: Frame) -> None:
        await self._hold(run_id, frame)
        if run_id in self._unmirrored:
            return
        try:
            await self._shared.append(run_id, frame)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            self._unmirrored.add(run_id)
            log.warning("run %s: the shared event log failed (%r); local readers only", run_id, error)

    async def read(self, run_id: UUID, after: int, wait_s: float) -> Batch | None:
        if run_id in self._frames:
            return await self._local.read(run_id, after, wait_s)
        return await self._shared.read(run_id, after, wait_s)

    async def finish(self, run_id: UUID) -> None:
        self._forget_later(run_id)  # scheduled first: it fires just before the copy is dropped
        await self._local.finish(run_id)
        if run_id in self._unmirrored:
            return
        try:
            await self._shared.finish(run_id)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            log.warning("run %s: could not finish it in the shared event log (%r)", run_id, error)

    async def _hold(self, run_id: UUID, frame: Frame) -> None:
        """Keep the frame in memory if this process holds a complete copy of the run."""
        held = self._frames.get(run_id)
        # A run started elsewhere (a sweeper closing it here) would lack its beginning.
        if run_id in self._shared_only or (held is None and frame.id != START_ID):
            return
        if held is not None and held >= self._max_local_frames:
            # Past the cap the copy would be incomplete: its readers go to the shared log.
            self._shared_only.add(run_id)
            del self._frames[run_id]
            await self._local.finish(run_id)
            return
        self._frames[run_id] = (held or 0) + 1
        await self._local.append(run_id, frame)
        if frame.terminal:  # in case `finish` never comes
            self._forget_later(run_id)

    def _forget_later(self, run_id: UUID) -> None:
        def forget() -> None:
            self._frames.pop(run_id, None)
            self._shared_only.discard(run_id)
            self._unmirrored.discard(run_id)

        # As long as the in-memory copy lives; later readers find the run in the shared log.
        asyncio.get_running_loop().call_later(self._retention_s, forget)
