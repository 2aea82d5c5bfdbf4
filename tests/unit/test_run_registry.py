"""`RunRegistry`: a run is stopped once, so a second stop never cuts short the saving of its end."""

from __future__ import annotations

import asyncio
import uuid

import anyio

from threadline.domain.models import RunStatus
from threadline.service.runs import RunRegistry


async def _run_that_saves_its_end(steps: list[str]) -> None:
    """The shape of a run: work until cancelled, then save its end in a shielded scope."""
    try:
        await asyncio.sleep(60)
    except asyncio.CancelledError:
        steps.append("stopped")
    with anyio.CancelScope(shield=True):
        await asyncio.sleep(0.2)
        steps.append("end saved")
    raise asyncio.CancelledError


async def test_a_second_stop_while_the_end_is_saved_does_not_interrupt_it() -> None:
    registry = RunRegistry()
    run_id = uuid.uuid4()
    steps: list[str] = []
    registry.launch(run_id, _run_that_saves_its_end(steps))
    await asyncio.sleep(0.05)
    # A cancel through Redis, then the lease renewal's cancel flag, while the end is being saved.
    assert registry.stop(run_id, RunStatus.CANCELLED)
    await asyncio.sleep(0.05)
    assert registry.stop(run_id, RunStatus.INTERRUPTED)
    await registry.drain(5)
    assert steps == ["stopped", "end saved"]
    assert run_id not in registry
    assert not registry.stop(run_id, RunStatus.CANCELLED)


async def test_the_first_reason_to_stop_is_the_one_recorded() -> None:
    registry = RunRegistry()
    run_id = uuid.uuid4()
    reasons: list[RunStatus] = []

    async def run() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            reasons.append(registry.stop_reason(run_id))
            raise

    registry.launch(run_id, run())
    await asyncio.sleep(0)
    registry.stop(run_id, RunStatus.CANCELLED)
    registry.stop(run_id, RunStatus.INTERRUPTED)
    await registry.drain(5)
    assert reasons == [RunStatus.CANCELLED]
