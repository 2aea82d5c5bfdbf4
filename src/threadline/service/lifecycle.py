"""Keeping runs honest across processes: leases, cancellation from anywhere, and the orphan sweeper."""

from __future__ import annotations

import asyncio
import logging
import time
from uuid import UUID

from threadline.domain.errors import NotFound, RunInProgress
from threadline.domain.events import TokenEvent, decode_event
from threadline.domain.models import RunStatus, Usage
from threadline.ports import (
    CancelSignal,
    ChatStore,
    EventLog,
    NoMetrics,
    OrphanedRun,
    RunLeases,
    RunMetrics,
    RunOutcome,
    TokenCounter,
)
from threadline.service.chat import format_error
from threadline.service.context import PER_MESSAGE_OVERHEAD
from threadline.service.runs import RunRegistry
from threadline.service.streams import closing_frames

log = logging.getLogger("threadline.runs")
CANCEL_WAIT_S = 5.0


class RunKeeper:
    def __init__(
        self,
        *,
        leases: RunLeases,
        store: ChatStore,
        events: EventLog,
        registry: RunRegistry,
        signal: CancelSignal,
        counter: TokenCounter,
        owner: str,
        lease_s: float,
        interval_s: float,
        metrics: RunMetrics | None = None,
    ) -> None:
        self._metrics = metrics or NoMetrics()
        self._leases = leases
        self._store = store
        self._events = events
        self._registry = registry
        self._signal = signal
        self._counter = counter
        self._owner = owner
        self._lease_s = lease_s
        self._interval_s = interval_s

    async def keep(self) -> None:
        """Forever: renew this process's leases, stop runs flagged for cancel, sweep orphans."""
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                await self.tick()
            except Exception:
                log.exception("run keeper tick failed")

    async def tick(self) -> None:
        for run_id in await self._leases.renew(self._owner, self._registry.run_ids(), self._lease_s):
            self._registry.stop(run_id, RunStatus.CANCELLED)
        await self.sweep()

    def on_cancel_signal(self, run_id: UUID) -> None:
        self._registry.stop(run_id, RunStatus.CANCELLED)

    async def cancel(self, user_id: str, run_id: UUID) -> None:
        """Ask the run's owner, wherever it is, to stop; wait a little for the partial reply to be saved."""
        run = await self._leases.request_cancel(user_id, run_id)
        if run is None:
            raise NotFound("Run not found.")
        if run.status.terminal:
            return
        if not self._registry.stop(run_id, RunStatus.CANCELLED):
            await self._signal.publish(run_id)
        try:
            await self.wait_for_end(run_id, CANCEL_WAIT_S)
        except RunInProgress:
            # Nobody stopped it: its owner is gone. The sweeper would find it; settle it now instead.
            await self.sweep()

    async def wait_for_end(self, run_id: UUID, timeout_s: float) -> None:
        """Return once the run is over; raise `RunInProgress` if it is still live after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            snapshot = await self._store.snapshot(run_id)
            if snapshot is None or snapshot.status.terminal:
                return
            await asyncio.sleep(0.1)
        raise RunInProgress("The reply ahead of this message is still being generated.", run_id=run_id)

    async def sweep(self) -> int:
        """End every run whose owner stopped renewing its lease, keeping the text it had produced."""
        orphans = await self._leases.orphaned()
        for orphan in orphans:
            await self._settle(orphan)
        return len(orphans)

    async def _settle(self, orphan: OrphanedRun) -> None:
        batch = await self._events.read(orphan.run_id, 0, 0)
        logged = "".join(
            event.content
            for frame in (batch.frames if batch else [])
            if isinstance(event := decode_event(frame.data), TokenEvent)
        )
        # The event log may hold tokens the owner had not saved yet: keep the longer, consistent text.
        content = logged if len(logged) > len(orphan.content) else orphan.content
        status = RunStatus.CANCELLED if orphan.cancel_requested else RunStatus.INTERRUPTED
        prompt = self._counter.count(orphan.question) + PER_MESSAGE_OVERHEAD
        completion = self._counter.count(content)
        outcome = RunOutcome(
            run_id=orphan.run_id,
            status=status,
            content=content,
            usage=Usage(
                prompt_tokens=prompt,
                completion_tokens=completion,
                total_tokens=prompt + completion,
                source="estimated",
            ),
            model=orphan.model,
            provider=orphan.provider,
            error=format_error("owner_lost", "The process serving this run stopped before it ended."),
            finish_reason=None,
            ttft_ms=None,
            latency_ms=0,
        )
        if await self._store.finish_run(outcome):
            self._metrics.run_recorded(outcome)
        log.warning("run %s was orphaned; recorded as %s", orphan.run_id, status.value)
        if batch is None:
            return
        snapshot = await self._store.snapshot(orphan.run_id)
        if snapshot is not None:
            last = batch.frames[-1].id if batch.frames else 0
            for frame in closing_frames(snapshot, last):
                await self._events.append(orphan.run_id, frame)
            await self._events.finish(orphan.run_id)
