"""Reading a run's stream: from the event log while it has the run, else rebuilt from Postgres."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from uuid import UUID

import msgspec

from threadline.domain.events import (
    SOURCES_ID,
    START_ID,
    TEXT_BASE_ID,
    DoneEvent,
    ErrorEvent,
    Frame,
    SourcesEvent,
    StartEvent,
    TokenEvent,
    UsageEvent,
    UsagePayload,
    decode_event,
    text_offset,
)
from threadline.domain.models import RunStatus
from threadline.ports import ChatStore, EventLog, NoMetrics, RunMetrics, RunSnapshot
from threadline.service.chat import parse_error

HEARTBEAT = b": keep-alive\n\n"
# With heartbeats off (`heartbeat_s=0`), how long a reader waits on the event log before looking again.
QUIET_WAIT_S = 15.0


class RunResult(msgspec.Struct, frozen=True, kw_only=True):
    text: str
    status: RunStatus
    usage: UsagePayload | None
    error: ErrorEvent | None


class RunStreams:
    def __init__(
        self,
        *,
        events: EventLog,
        store: ChatStore,
        heartbeat_s: float,
        stream_url: Callable[[UUID, str], str],
        poll_s: float = 0.25,
        metrics: RunMetrics | None = None,
    ) -> None:
        self._metrics = metrics or NoMetrics()
        self._events = events
        self._store = store
        self._heartbeat_s = heartbeat_s
        self._stream_url = stream_url
        self._poll_s = poll_s

    async def follow(self, run_id: UUID, after: int = 0) -> AsyncIterator[bytes]:
        """The run's frames after `after`, live until its final frame, with heartbeats in silences.

        Whoever reads this streams to a client: it counts as a connected stream client meanwhile.
        """
        self._metrics.stream_opened()
        try:
            async for data in self._frames(run_id, after):
                yield data
        finally:
            self._metrics.stream_closed()

    async def _frames(self, run_id: UUID, after: int) -> AsyncIterator[bytes]:
        while True:
            batch = await self._events.read(run_id, after, self._heartbeat_s or QUIET_WAIT_S)
            if batch is None:
                async for data in self._rebuild(run_id, after):
                    yield data
                return
            if not batch.frames and not batch.ended:
                if self._heartbeat_s:
                    yield HEARTBEAT
                continue
            for frame in batch.frames:
                yield frame.data
                after = frame.id
                if frame.terminal:
                    return
            if batch.ended:
                # The log's end lies behind this reader: it saw text the log never got (a producer
                # that died before mirroring it). Its ending is numbered after that, from Postgres.
                async for data in self._rebuild(run_id, after):
                    yield data
                return

    async def result(self, run_id: UUID) -> RunResult:
        """Wait for the run to end and gather its reply."""
        parts: list[str] = []
        error: ErrorEvent | None = None
        async for data in self._frames(run_id, 0):
            if data.startswith(b":"):
                continue
            event = decode_event(data)
            if isinstance(event, TokenEvent):
                parts.append(event.content)
            elif isinstance(event, ErrorEvent):
                error = event
            elif isinstance(event, DoneEvent):
                return RunResult(text="".join(parts), status=event.status, usage=event.usage, error=error)
        snapshot = await self._store.snapshot(run_id)
        status = snapshot.status if snapshot else RunStatus.INTERRUPTED
        return RunResult(text="".join(parts), status=status, usage=None, error=error)

    async def _rebuild(self, run_id: UUID, after: int) -> AsyncIterator[bytes]:
        """The same stream from Postgres: what the event log lost, rebuilt from the saved reply."""
        snapshot = await self._store.snapshot(run_id)
        if snapshot is None:
            return
        if after < START_ID:
            start = StartEvent(
                run_id=run_id,
                thread_id=snapshot.thread_id,
                message_id=snapshot.message_id,
                stream_url=self._stream_url(run_id, snapshot.user_id),
            )
            yield Frame.of(START_ID, start).data
        if snapshot.sources and after < SOURCES_ID:
            yield Frame.of(SOURCES_ID, SourcesEvent(sources=snapshot.sources)).data
        sent = text_offset(after)
        quiet_since = time.monotonic()
        while True:
            if len(snapshot.content) > sent:
                token = TokenEvent(content=snapshot.content[sent:])
                yield Frame.of(TEXT_BASE_ID + len(snapshot.content), token).data
                sent, quiet_since = len(snapshot.content), time.monotonic()
            if snapshot.status.terminal:
                break
            if self._heartbeat_s and time.monotonic() - quiet_since >= self._heartbeat_s:
                yield HEARTBEAT
                quiet_since = time.monotonic()
            # Still running somewhere we cannot hear: follow the partial reply it saves.
            await asyncio.sleep(self._poll_s)
            snapshot = await self._store.snapshot(run_id) or snapshot
        for frame in closing_frames(snapshot, after):
            yield frame.data


def closing_frames(snapshot: RunSnapshot, after: int) -> list[Frame]:
    """`error`, `usage` and `done` with the ids the live run gave them."""
    usage = UsagePayload.of(snapshot.usage) if snapshot.usage else None
    events: list[ErrorEvent | UsageEvent | DoneEvent] = []
    if snapshot.error:
        code, message = parse_error(snapshot.error)
        events.append(ErrorEvent(code=code, message=message))
    if usage is not None:
        events.append(UsageEvent(usage=usage, model=snapshot.model))
    events.append(
        DoneEvent(run_id=snapshot.run_id, thread_id=snapshot.thread_id, status=snapshot.status, usage=usage)
    )
    saved_end = TEXT_BASE_ID + len(snapshot.content)
    if after > saved_end + len(events):
        # The client saw text that never reached Postgres (its producer died between flushes):
        # the ending still has to reach it, so number it after what the client holds.
        return [Frame.of(after + 1 + i, event) for i, event in enumerate(events)]
    return [Frame.of(saved_end + 1 + i, event) for i, event in enumerate(events) if saved_end + 1 + i > after]
