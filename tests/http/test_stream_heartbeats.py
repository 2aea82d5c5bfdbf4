"""Heartbeats in a silent stream: a comment every `heartbeat_s`, and none at all when it is 0."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from threadline.adapters.memory_events import MemoryEventLog
from threadline.domain.events import START_ID, DoneEvent, Frame, StartEvent
from threadline.domain.models import RunStatus
from threadline.service.streams import HEARTBEAT, RunStreams

SILENCE_S = 0.6


@pytest.mark.parametrize(("heartbeat_s", "least", "most"), [(0.1, 3, 8), (0.0, 0, 0)])
async def test_a_silence_gets_heartbeats_unless_they_are_off(
    client: AsyncTestClient[Litestar], heartbeat_s: float, least: int, most: int
) -> None:
    events = MemoryEventLog()
    # The store is only read to rebuild a run the event log lost; this log keeps the run.
    streams = RunStreams(
        events=events,
        store=client.app.state.services.store,
        heartbeat_s=heartbeat_s,
        stream_url=lambda *_: "/unused",
    )
    run_id, thread_id = uuid.uuid4(), uuid.uuid4()
    start = Frame.of(
        START_ID, StartEvent(run_id=run_id, thread_id=thread_id, message_id=uuid.uuid4(), stream_url="/s")
    )
    await events.append(run_id, start)
    received: list[bytes] = []

    async def read() -> None:
        async for data in streams.follow(run_id):
            received.append(data)

    reader = asyncio.create_task(read())
    await asyncio.sleep(SILENCE_S)
    # Before 0 meant "off", a reader with heartbeat_s=0 spun, sending heartbeats as fast as it could.
    beats = received.count(HEARTBEAT)
    assert least <= beats <= most, f"{beats} heartbeats in {SILENCE_S} s at heartbeat_s={heartbeat_s}"
    done = Frame.of(
        START_ID + 1, DoneEvent(run_id=run_id, thread_id=thread_id, status=RunStatus.COMPLETED, usage=None)
    )
    await events.append(run_id, done)
    await asyncio.wait_for(reader, 5)
    assert [data for data in received if data != HEARTBEAT] == [start.data, done.data]
