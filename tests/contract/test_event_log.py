"""Contract tests every `EventLog` passes: the in-memory log and the Redis Streams log."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from uuid import UUID, uuid4

import pytest
from redis.asyncio import Redis

from threadline.adapters.memory_events import MemoryEventLog
from threadline.adapters.redis_events import RedisEventLog
from threadline.domain.events import DoneEvent, Frame
from threadline.domain.models import RunStatus
from threadline.ports import Batch, EventLog, RunAppend, SharedEventLog

# Long enough that a test finishing early proves the reader was woken, not timed out.
LONG_WAIT_S = 10.0
WOKEN_WITHIN_S = 2.0


class Logs:
    """Event logs of one kind for a test; `peer` is how another process sees the same runs."""

    def __init__(self, redis_url: str | None) -> None:
        self.redis_url = redis_url
        self._clients: list[Redis] = []

    def client(self, *, max_connections: int | None = None) -> Redis:
        assert self.redis_url is not None
        client = Redis.from_url(
            self.redis_url, socket_timeout=5, socket_connect_timeout=5, max_connections=max_connections
        )
        self._clients.append(client)
        return client

    def open(self, *, retention_s: int = 600) -> SharedEventLog:
        if self.redis_url is None:
            return MemoryEventLog(retention_s=retention_s)
        return RedisEventLog(self.client(), retention_s=retention_s)

    def peer(self, log: EventLog) -> EventLog:
        # A memory log has no other process: its only readers share the object.
        return log if self.redis_url is None else self.open()

    async def aclose(self) -> None:
        for client in self._clients:
            await client.aclose()


@pytest.fixture(params=["memory", "redis"])
async def logs(request: pytest.FixtureRequest) -> AsyncIterator[Logs]:
    made = Logs(request.getfixturevalue("redis_url") if request.param == "redis" else None)
    yield made
    await made.aclose()


@pytest.fixture
async def log(logs: Logs) -> SharedEventLog:
    return logs.open()


def frame(event_id: int) -> Frame:
    return Frame(event_id, b'id: %d\ndata: {"type":"token","content":"x"}\n\n' % event_id)


def done(event_id: int, run_id: UUID) -> Frame:
    event = DoneEvent(run_id=run_id, thread_id=uuid4(), status=RunStatus.COMPLETED, usage=None)
    return Frame.of(event_id, event)


def ids(batch: Batch | None) -> list[int]:
    assert batch is not None
    return [f.id for f in batch.frames]


async def fill(log: EventLog, run_id: UUID, *event_ids: int) -> None:
    for event_id in event_ids:
        await log.append(run_id, frame(event_id))


async def test_an_unknown_run_is_none_without_waiting(log: EventLog) -> None:
    started = time.monotonic()
    assert await log.read(uuid4(), 0, LONG_WAIT_S) is None
    assert time.monotonic() - started < WOKEN_WITHIN_S


async def test_a_reader_before_the_first_append_gets_none_then_the_frames(log: EventLog) -> None:
    run_id = uuid4()
    assert await log.read(run_id, 0, 0.0) is None
    await fill(log, run_id, 1)
    assert ids(await log.read(run_id, 0, 0.0)) == [1]


async def test_frames_come_back_in_order_after_an_exclusive_position(log: EventLog) -> None:
    run_id = uuid4()
    await fill(log, run_id, 1, 2, 5, 9)
    assert ids(await log.read(run_id, 0, 0.0)) == [1, 2, 5, 9]
    assert ids(await log.read(run_id, 2, 0.0)) == [5, 9]
    # A position between two ids, as a client's Last-Event-ID may be.
    assert ids(await log.read(run_id, 3, 0.0)) == [5, 9]
    assert await log.read(run_id, 9, 0.0) == Batch([], ended=False)


async def test_a_blocked_reader_wakes_when_a_frame_is_appended(log: EventLog) -> None:
    run_id = uuid4()
    await fill(log, run_id, 1)
    started = time.monotonic()
    reader = asyncio.create_task(log.read(run_id, 1, LONG_WAIT_S))
    await asyncio.sleep(0.1)
    assert not reader.done()
    await fill(log, run_id, 4)
    batch = await asyncio.wait_for(reader, WOKEN_WITHIN_S)
    assert ids(batch) == [4]
    assert batch is not None
    assert not batch.ended
    assert time.monotonic() - started < WOKEN_WITHIN_S


async def test_a_quiet_run_gives_an_empty_batch_after_the_wait(log: EventLog) -> None:
    run_id = uuid4()
    await fill(log, run_id, 1)
    started = time.monotonic()
    assert await log.read(run_id, 1, 0.3) == Batch([], ended=False)
    assert time.monotonic() - started >= 0.25


async def test_finish_ends_the_run_and_wakes_its_readers(log: EventLog) -> None:
    run_id = uuid4()
    await fill(log, run_id, 1, 2)
    reader = asyncio.create_task(log.read(run_id, 2, LONG_WAIT_S))
    await asyncio.sleep(0.1)
    await log.finish(run_id)
    assert await asyncio.wait_for(reader, WOKEN_WITHIN_S) == Batch([], ended=True)
    assert await log.read(run_id, 0, 0.0) == Batch([frame(1), frame(2)], ended=True)
    started = time.monotonic()
    assert await log.read(run_id, 2, LONG_WAIT_S) == Batch([], ended=True)
    assert time.monotonic() - started < WOKEN_WITHIN_S


async def test_the_final_frame_ends_the_run_before_finish(log: EventLog) -> None:
    run_id = uuid4()
    await fill(log, run_id, 1)
    reader = asyncio.create_task(log.read(run_id, 1, LONG_WAIT_S))
    await asyncio.sleep(0.1)
    final = done(7, run_id)
    await log.append(run_id, final)
    assert await asyncio.wait_for(reader, WOKEN_WITHIN_S) == Batch([final], ended=True)
    assert await log.read(run_id, 7, LONG_WAIT_S) == Batch([], ended=True)
    await log.finish(run_id)
    await log.finish(run_id)
    assert ids(await log.read(run_id, 0, 0.0)) == [1, 7]


async def test_finishing_an_unknown_run_does_not_create_it(log: EventLog) -> None:
    run_id = uuid4()
    await log.finish(run_id)
    assert await log.read(run_id, 0, 0.0) is None


async def test_data_comes_back_byte_identical(log: EventLog) -> None:
    run_id = uuid4()
    payloads = [
        b"",
        b"\x00\xff\xfe\r\n\r\n",
        "id: 2\ndata: «ünïcode» 🧵\n\n".encode(),
        os.urandom(256 * 1024),
    ]
    for event_id, data in enumerate(payloads, start=1):
        await log.append(run_id, Frame(event_id, data))
    batch = await log.read(run_id, 0, 0.0)
    assert batch is not None
    assert [f.data for f in batch.frames] == payloads


async def test_a_long_run_reads_back_completely(log: EventLog) -> None:
    run_id = uuid4()
    count = 2_000
    await fill(log, run_id, *range(1, count + 1))
    await log.finish(run_id)
    read: list[Frame] = []
    ended = False
    while not ended:
        batch = await log.read(run_id, read[-1].id if read else 0, 0.0)
        assert batch is not None
        read += batch.frames
        ended = batch.ended
    assert read == [frame(i) for i in range(1, count + 1)]


async def test_another_process_sees_the_frames_and_the_end(logs: Logs) -> None:
    writer = logs.open()
    reader_log = logs.peer(writer)
    run_id = uuid4()
    await fill(writer, run_id, 1)
    assert ids(await reader_log.read(run_id, 0, 0.0)) == [1]
    reader = asyncio.create_task(reader_log.read(run_id, 1, LONG_WAIT_S))
    await asyncio.sleep(0.1)
    await fill(writer, run_id, 3)
    assert ids(await asyncio.wait_for(reader, WOKEN_WITHIN_S)) == [3]
    reader = asyncio.create_task(reader_log.read(run_id, 3, LONG_WAIT_S))
    await asyncio.sleep(0.1)
    await writer.finish(run_id)
    assert await asyncio.wait_for(reader, WOKEN_WITHIN_S) == Batch([], ended=True)


async def test_a_finished_run_is_dropped_after_the_retention_period(logs: Logs) -> None:
    log = logs.open(retention_s=1)
    run_id = uuid4()
    await fill(log, run_id, 1, 2)
    await log.finish(run_id)
    assert await log.read(run_id, 0, 0.0) == Batch([frame(1), frame(2)], ended=True)
    await asyncio.sleep(1.5)
    assert await log.read(run_id, 0, 0.0) is None


# What only the Redis log has: a length cap, a shared connection pool, client checks.


@pytest.fixture
async def redis_logs(redis_url: str) -> AsyncIterator[Logs]:
    made = Logs(redis_url)
    yield made
    await made.aclose()


async def test_many_runs_append_in_one_call_each_in_order(log: SharedEventLog) -> None:
    first, second = uuid4(), uuid4()
    appended = await log.append_runs(
        [
            RunAppend(first, [frame(1), frame(2), frame(4)]),
            RunAppend(second, [frame(1), done(2, second)], finished=True),
        ]
    )
    assert appended == [True, True]
    running, ended = await log.read(first, 0, 0.0), await log.read(second, 0, 0.0)
    assert ids(running) == [1, 2, 4]
    assert running is not None
    assert not running.ended
    assert ids(ended) == [1, 2]
    assert ended is not None
    assert ended.ended
    # Later calls carry on where the run left off, and may only finish it.
    assert await log.append_runs([RunAppend(first, [frame(7)]), RunAppend(first, [], finished=True)]) == [
        True,
        True,
    ]
    finished = await log.read(first, 4, 0.0)
    assert ids(finished) == [7]
    assert finished is not None
    assert finished.ended


async def test_append_runs_refuses_a_lost_stream_and_appends_the_rest(redis_logs: Logs) -> None:
    client = redis_logs.client()
    log = RedisEventLog(client)
    lost, other = uuid4(), uuid4()
    await fill(log, lost, 1, 2)
    await client.delete(f"threadline:run:{lost}")
    appended = await log.append_runs([RunAppend(lost, [frame(3)]), RunAppend(other, [frame(1)])])
    assert appended == [False, True]
    assert await log.read(lost, 0, 0.0) is None
    assert ids(await log.read(other, 0, 0.0)) == [1]


async def test_append_runs_loads_its_script_again_after_a_redis_restart(redis_logs: Logs) -> None:
    client = redis_logs.client()
    log = RedisEventLog(client)
    run_id = uuid4()
    await client.script_flush()  # what a restarted Redis has forgotten
    assert await log.append_runs([RunAppend(run_id, [frame(1), frame(2)])]) == [True]
    assert ids(await log.read(run_id, 0, 0.0)) == [1, 2]


async def test_a_reader_behind_the_length_cap_gets_none(redis_logs: Logs) -> None:
    log = RedisEventLog(redis_logs.client(), max_frames=100)
    run_id = uuid4()
    await fill(log, run_id, *range(1, 1_001))
    # Frames before the oldest one kept are gone: the service rebuilds from Postgres instead.
    assert await log.read(run_id, 0, 0.0) is None
    assert ids(await log.read(run_id, 998, 0.0)) == [999, 1000]


async def test_a_stream_lost_mid_run_stays_lost(redis_logs: Logs) -> None:
    client = redis_logs.client()
    log = RedisEventLog(client)
    run_id = uuid4()
    await fill(log, run_id, 1, 5)
    await client.delete(f"threadline:run:{run_id}")
    await fill(log, run_id, 9, 12)
    # Later frames must not recreate a stream with a hole: readers rebuild from Postgres instead.
    assert await log.read(run_id, 0, 0.0) is None
    assert await log.read(run_id, 5, 0.0) is None


async def test_readers_past_the_blocking_slots_poll_and_still_wake(redis_logs: Logs) -> None:
    log = RedisEventLog(redis_logs.client(), max_blocked_reads=1)
    run_ids = [uuid4() for _ in range(4)]
    for run_id in run_ids:
        await fill(log, run_id, 1)
    readers = [asyncio.create_task(log.read(run_id, 1, LONG_WAIT_S)) for run_id in run_ids]
    await asyncio.sleep(0.2)
    for run_id in run_ids:
        await fill(log, run_id, 2)
    batches = await asyncio.wait_for(asyncio.gather(*readers), WOKEN_WITHIN_S)
    assert [ids(batch) for batch in batches] == [[2]] * len(run_ids)


async def test_a_cancelled_reader_leaves_its_connection_clean(redis_logs: Logs) -> None:
    # One connection: the next command reuses it and must not read the cancelled XREAD's reply.
    log = RedisEventLog(redis_logs.client(max_connections=1))
    run_id = uuid4()
    await fill(log, run_id, 1)
    reader = asyncio.create_task(log.read(run_id, 1, LONG_WAIT_S))
    await asyncio.sleep(0.1)
    reader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reader
    await fill(log, run_id, 2)
    assert ids(await log.read(run_id, 0, 0.0)) == [1, 2]
    assert ids(await log.read(run_id, 1, LONG_WAIT_S)) == [2]


async def test_a_client_that_decodes_or_has_no_timeout_is_refused(redis_url: str) -> None:
    decoding = Redis.from_url(redis_url, socket_timeout=5, decode_responses=True)
    untimed = Redis.from_url(redis_url)
    try:
        with pytest.raises(ValueError, match="decode_responses"):
            RedisEventLog(decoding)
        with pytest.raises(ValueError, match="socket_timeout"):
            RedisEventLog(untimed)
    finally:
        await decoding.aclose()
        await untimed.aclose()
