"""`FanoutEventLog`: runs this process produces are read from memory here, mirrored to a shared log."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from uuid import UUID

from threadline.adapters.memory_events import MemoryEventLog
from threadline.domain.events import START_ID, Frame
from threadline.ports import Batch, RunAppend, SharedEventLog

log = logging.getLogger("threadline.events")


class _Queued:
    """A run's frames waiting for the next mirror call, and the appends waiting for it to happen."""

    __slots__ = ("finished", "frames", "waiters")

    def __init__(self) -> None:
        self.frames: list[Frame] = []
        self.finished = False
        self.waiters: list[asyncio.Future[None]] = []


class FanoutEventLog:
    """The `EventLog` port over a shared log (Redis), with an in-process copy of the runs appended here.

    Measured at 50 to 1,000 streams on one worker: following a run through Redis cost three round
    trips per token per reader (XLEN + XRANGE, then XREAD BLOCK again), the largest share of the
    server's CPU. A reader in the process that produces the run waits on an in-memory event
    instead; readers in other processes still read the shared log, which gets every frame.

    Mirroring is batched: frames queue per run, and one task sends every queued run's frames in
    one call (`append_runs`: one pipelined round trip to Redis) every `mirror_interval_s`, instead
    of one round trip per token per run. A run's first frame and its end are mirrored before
    `append` / `finish` return, so another process finds a run as soon as its request is answered
    and sees its end at once; a token reaches other processes at most `mirror_interval_s` later
    than local readers.

    The shared log is a mirror: if an append to it fails (Redis down or restarted), that run stops
    being mirrored, so no stream with a hole appears there, and the run goes on for local readers.
    Other processes then find no stream and rebuild it from Postgres, as for any lost stream.
    Only runs whose first frame was appended here are held, and only up to `max_local_frames`:
    anything else is read from the shared log.
    """

    def __init__(
        self,
        shared: SharedEventLog,
        *,
        local_retention_s: float = 60.0,
        max_local_frames: int = 10_000,
        mirror_interval_s: float = 0.01,
    ) -> None:
        self._shared = shared
        self._local = MemoryEventLog(retention_s=local_retention_s)
        self._retention_s = local_retention_s
        self._max_local_frames = max_local_frames
        self._mirror_interval_s = mirror_interval_s
        self._frames: dict[UUID, int] = {}  # frames held in memory, per local run
        self._shared_only: set[UUID] = set()  # local runs past the cap
        self._unmirrored: set[UUID] = set()
        self._queue: dict[UUID, _Queued] = {}
        self._urgent = asyncio.Event()
        self._mirroring: asyncio.Task[None] | None = None

    def __contains__(self, run_id: object) -> bool:
        return run_id in self._frames

    async def append(self, run_id: UUID, frame: Frame) -> None:
        await self._hold(run_id, frame)
        if run_id in self._unmirrored:
            return
        queued = self._queued(run_id)
        queued.frames.append(frame)
        if frame.id == START_ID or frame.terminal:
            await self._mirrored(queued)

    async def read(self, run_id: UUID, after: int, wait_s: float) -> Batch | None:
        if run_id in self._frames:
            return await self._local.read(run_id, after, wait_s)
        return await self._shared.read(run_id, after, wait_s)

    async def finish(self, run_id: UUID) -> None:
        self._forget_later(run_id)  # scheduled first: it fires just before the copy is dropped
        await self._local.finish(run_id)
        if run_id in self._unmirrored:
            return
        queued = self._queued(run_id)
        queued.finished = True
        await self._mirrored(queued)

    async def flush(self) -> None:
        """Mirror what is queued now (shutdown, tests)."""
        await self._mirror_now()

    def _queued(self, run_id: UUID) -> _Queued:
        queued = self._queue.get(run_id)
        if queued is None:
            queued = self._queue[run_id] = _Queued()
            if self._mirroring is None or self._mirroring.done():
                self._mirroring = asyncio.get_running_loop().create_task(self._mirror_while_queued())
        return queued

    async def _mirrored(self, queued: _Queued) -> None:
        """Wait until the next mirror call has taken the run's queued frames (sent or given up)."""
        waiter = asyncio.get_running_loop().create_future()
        queued.waiters.append(waiter)
        self._urgent.set()
        # Shielded: a reader's cancellation must not cancel a future other appends may share.
        await asyncio.shield(waiter)

    async def _mirror_while_queued(self) -> None:
        while self._queue:
            if not self._urgent.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._mirror_interval_s):
                        await self._urgent.wait()
            await self._mirror_now()

    async def _mirror_now(self) -> None:
        self._urgent.clear()
        batch, self._queue = self._queue, {}
        if not batch:
            return
        mirrored = [False] * len(batch)
        try:
            appends = [RunAppend(run_id, queued.frames, queued.finished) for run_id, queued in batch.items()]
            mirrored = await self._shared.append_runs(appends)
        except Exception as error:
            log.warning("the shared event log failed (%r): %d run(s) now local only", error, len(batch))
        finally:
            for (run_id, queued), ok in zip(batch.items(), mirrored, strict=True):
                if not ok:
                    self._stop_mirroring(run_id)
                for waiter in queued.waiters:
                    if not waiter.done():
                        waiter.set_result(None)

    def _stop_mirroring(self, run_id: UUID) -> None:
        """No hole in the shared log: the run's later frames are not mirrored either."""
        self._unmirrored.add(run_id)
        later = self._queue.pop(run_id, None)
        for waiter in later.waiters if later else ():
            if not waiter.done():
                waiter.set_result(None)
        log.info("run %s is no longer mirrored to the shared event log; local readers only", run_id)

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
