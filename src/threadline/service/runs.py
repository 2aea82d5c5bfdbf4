"""The runs this process owns: started as tasks, cancelled with a reason, drained on shutdown."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any
from uuid import UUID

from threadline.domain.models import RunStatus


class RunRegistry:
    def __init__(self) -> None:
        self._tasks: dict[UUID, asyncio.Task[None]] = {}
        self._stop_reasons: dict[UUID, RunStatus] = {}
        self.accepting = True

    def __len__(self) -> int:
        return len(self._tasks)

    def __contains__(self, run_id: object) -> bool:
        return run_id in self._tasks

    def run_ids(self) -> list[UUID]:
        return list(self._tasks)

    def launch(self, run_id: UUID, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work, name=f"run-{run_id}")
        self._tasks[run_id] = task
        task.add_done_callback(lambda _: self._forget(run_id))

    def _forget(self, run_id: UUID) -> None:
        self._tasks.pop(run_id, None)
        self._stop_reasons.pop(run_id, None)

    def stop_reason(self, run_id: UUID) -> RunStatus:
        """Why a cancelled run task was stopped: by a user (`cancelled`) or by shutdown (`interrupted`)."""
        return self._stop_reasons.get(run_id, RunStatus.INTERRUPTED)

    def stop(self, run_id: UUID, reason: RunStatus) -> bool:
        """Cancel a run this process owns, once; True if it is running here (stopping, or stopped now).

        Once: a stopped run saves its end in a shielded scope, and a second `Task.cancel()` would
        still interrupt that (anyio's shield does not hold against asyncio's own cancellation).
        A cancel through Redis followed by the lease renewal's cancel flag did just that to 10 of
        50 runs cancelled at once (`make reliability`): their end was never saved or announced,
        and their readers waited for the sweeper.
        """
        task = self._tasks.get(run_id)
        if task is None or task.done():
            return False
        if run_id not in self._stop_reasons:
            self._stop_reasons[run_id] = reason
            task.cancel()
        return True

    async def drain(self, grace_s: float) -> None:
        """Let running runs finish for `grace_s`, then interrupt the rest and wait for them to save."""
        self.accepting = False
        pending = list(self._tasks.values())
        if pending:
            _, still_running = await asyncio.wait(pending, timeout=grace_s)
            for run_id, task in list(self._tasks.items()):
                if task in still_running:
                    self.stop(run_id, RunStatus.INTERRUPTED)
            if still_running:
                await asyncio.wait(still_running, timeout=10)
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                if task.done():
                    task.result()
