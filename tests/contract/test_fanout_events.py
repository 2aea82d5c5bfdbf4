"""`FanoutEventLog`: local readers read memory, other processes read a batched mirror, failures stay local."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from uuid import UUID, uuid4

import pytest
from redis.asyncio import Redis

from threadline.adapters.fanout_events import FanoutEventLog
from threadline.adapters.memory_events import MemoryEventLog
from threadline.adapters.redis_events import RedisEventLog
from threadline.domain.events import DoneEvent, Frame
from threadline.domain.models import RunStatus
from threadline.ports import Batch, RunAppend


def frame(event_id: int) -> Frame:
    return Frame(event_id, b'id: %d\ndata: {"type":"token","content":"x"}\n\n' % event_id)


def done(event_id: int, run_id: UUID) -> Frame:
    return Frame.of(
        event_id, DoneEvent(run_id=run_id, thread_id=uuid4(), status=RunStatus.COMPLETED, usage=None)
    )


def ids(batch: Batch | None) -> list[int]:
    assert batch is not None
    return [f.id for f in batch.frames]


class CountingLog(MemoryEventLog):
    """A shared log that counts its reads, appends and calls, and can be made to fail."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0
        self.appends = 0
        self.calls = 0
        self.failing = False

    async def append(self, run_id: UUID, frame: Frame) -> None:
        if self.failing:
            raise ConnectionError("the shared log is down")
        self.appends += 1
        await super().append(run_id, frame)

    async def append_runs(self, appends: Sequence[RunAppend]) -> list[bool]:
        self.calls += 1
        return await super().append_runs(appends)

    async def read(self, run_id: UUID, after: int, wait_s: float) -> Batch | None:
        self.reads += 1
        return await super().read(run_id, after, wait_s)


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=5)
    yield client
    await client.aclose()


async def test_a_local_run_is_read_from_memory_and_mirrored() -> None:
    shared = CountingLog()
    log = FanoutEventLog(shared)
    run_id = uuid4()
    for event_id in (1, 3, 4):
        await log.append(run_id, frame(event_id))
    assert ids(await log.read(run_id, 1, 0.0)) == [3, 4]
    await log.flush()
    assert shared.reads == 0
    assert ids(await shared.read(run_id, 0, 0.0)) == [1, 3, 4]


async def test_the_start_and_the_end_are_mirrored_before_append_returns() -> None:
    shared = CountingLog()
    log = FanoutEventLog(shared, mirror_interval_s=60.0)
    run_id = uuid4()
    await log.append(run_id, frame(1))
    assert ids(await shared.read(run_id, 0, 0.0)) == [1]
    await log.append(run_id, frame(2))
    await log.append(run_id, done(3, run_id))
    batch = await shared.read(run_id, 0, 0.0)
    assert ids(batch) == [1, 2, 3]
    assert batch is not None
    assert batch.ended


async def test_tokens_of_many_runs_are_mirrored_together() -> None:
    shared = CountingLog()
    log = FanoutEventLog(shared, mirror_interval_s=0.05)
    run_ids = [uuid4() for _ in range(20)]
    for run_id in run_ids:
        await log.append(run_id, frame(1))
    calls = shared.calls
    for event_id in range(2, 12):
        for run_id in run_ids:
            await log.append(run_id, frame(event_id))
    await asyncio.sleep(0.2)  # a few mirror intervals
    for run_id in run_ids:
        assert ids(await shared.read(run_id, 0, 0.0)) == list(range(1, 12))
    # 200 token frames went out in a handful of calls, not 200.
    assert shared.calls - calls <= 5


async def test_a_waiting_local_reader_wakes_on_append() -> None:
    log = FanoutEventLog(CountingLog())
    run_id = uuid4()
    await log.append(run_id, frame(1))
    reader = asyncio.create_task(log.read(run_id, 1, 10.0))
    await asyncio.sleep(0.05)
    await log.append(run_id, frame(2))
    assert ids(await asyncio.wait_for(reader, 2.0)) == [2]


async def test_a_run_started_elsewhere_is_read_from_the_shared_log(redis: Redis) -> None:
    producer, other = FanoutEventLog(RedisEventLog(redis)), FanoutEventLog(RedisEventLog(redis))
    run_id = uuid4()
    await producer.append(run_id, frame(1))
    await producer.append(run_id, frame(2))
    await producer.flush()
    # A sweeper in the other process closes the run: its copy would lack the beginning.
    await other.append(run_id, done(3, run_id))
    await other.finish(run_id)
    batch = await other.read(run_id, 0, 0.0)
    assert ids(batch) == [1, 2, 3]
    assert batch is not None
    assert batch.ended


async def test_a_failing_shared_log_keeps_local_readers_going_and_stops_mirroring() -> None:
    shared = CountingLog()
    log = FanoutEventLog(shared)
    run_id = uuid4()
    await log.append(run_id, frame(1))
    shared.failing = True
    await log.append(run_id, frame(2))
    await log.flush()
    shared.failing = False
    await log.append(run_id, frame(3))
    await log.append(run_id, done(4, run_id))
    await log.finish(run_id)
    assert ids(await log.read(run_id, 0, 0.0)) == [1, 2, 3, 4]
    # No hole in the shared log: the run stopped being mirrored at the first failure.
    assert ids(await shared.read(run_id, 0, 0.0)) == [1]


async def test_a_run_past_the_cap_is_read_from_the_shared_log() -> None:
    shared = CountingLog()
    log = FanoutEventLog(shared, max_local_frames=3)
    run_id = uuid4()
    for event_id in range(1, 6):
        await log.append(run_id, frame(event_id))
    await log.flush()
    assert ids(await log.read(run_id, 2, 0.0)) == [3, 4, 5]
    assert shared.reads == 1
