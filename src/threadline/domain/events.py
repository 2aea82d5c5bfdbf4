"""The run's SSE events: a tagged union, their ids, and their bytes on the wire.

Event ids are positions, not counters: `start` is 1, `sources` is 2, a `token` event's id is
2 plus the number of reply characters sent up to and including it, and each closing event adds
one. So an id says exactly how much of the reply a client has, and a stream can be rebuilt
from the reply text in Postgres when the event log has lost it.
"""

from __future__ import annotations

from typing import Literal
from uuid import UUID

import msgspec

from threadline.domain.models import RunStatus, Usage

START_ID = 1
SOURCES_ID = 2
TEXT_BASE_ID = 2


class Source(msgspec.Struct, frozen=True, kw_only=True):
    message_id: UUID
    thread_id: UUID
    score: float
    snippet: str


class UsagePayload(msgspec.Struct, frozen=True, kw_only=True):
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    reasoning_tokens: int
    total_tokens: int
    source: Literal["measured", "estimated"]

    @classmethod
    def of(cls, usage: Usage) -> UsagePayload:
        return cls(
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            cached_tokens=usage.cached_tokens,
            reasoning_tokens=usage.reasoning_tokens,
            total_tokens=usage.total_tokens,
            source=usage.source,
        )


class _Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    pass


class StartEvent(_Event, tag="start", frozen=True, kw_only=True):
    run_id: UUID
    thread_id: UUID
    message_id: UUID
    stream_url: str


class SourcesEvent(_Event, tag="sources", frozen=True, kw_only=True):
    sources: list[Source]


class TokenEvent(_Event, tag="token", frozen=True, kw_only=True):
    content: str


class UsageEvent(_Event, tag="usage", frozen=True, kw_only=True):
    usage: UsagePayload
    model: str


class ErrorEvent(_Event, tag="error", frozen=True, kw_only=True):
    code: str
    message: str


class DoneEvent(_Event, tag="done", frozen=True, kw_only=True):
    run_id: UUID
    thread_id: UUID
    status: RunStatus
    usage: UsagePayload | None


RunEvent = StartEvent | SourcesEvent | TokenEvent | UsageEvent | ErrorEvent | DoneEvent

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(RunEvent)


class Frame(msgspec.Struct, frozen=True):
    """One SSE event as stored in the event log and sent to every reader."""

    id: int
    data: bytes

    @classmethod
    def of(cls, event_id: int, event: RunEvent) -> Frame:
        return cls(event_id, b"id: %d\ndata: %s\n\n" % (event_id, _encoder.encode(event)))

    def event(self) -> RunEvent:
        return decode_event(self.data)

    @property
    def terminal(self) -> bool:
        return b'"type":"done"' in self.data


def decode_event(data: bytes) -> RunEvent:
    """The event in one SSE frame's bytes."""
    event: RunEvent = _decoder.decode(data.split(b"data: ", 1)[1].rstrip(b"\n"))
    return event


class EventIds:
    """Assigns ids to a run's events in the order they are published."""

    def __init__(self) -> None:
        self._text_chars = 0
        self._last = 0

    @property
    def last(self) -> int:
        return self._last

    def next(self, event: RunEvent) -> int:
        if isinstance(event, StartEvent):
            value = START_ID
        elif isinstance(event, SourcesEvent):
            value = SOURCES_ID
        elif isinstance(event, TokenEvent):
            self._text_chars += len(event.content)
            value = TEXT_BASE_ID + self._text_chars
        else:
            value = max(self._last, TEXT_BASE_ID + self._text_chars) + 1
        if value <= self._last:
            raise ValueError(f"event id {value} does not follow {self._last}")
        self._last = value
        return value

    def frame(self, event: RunEvent) -> Frame:
        return Frame.of(self.next(event), event)


def text_offset(last_event_id: int) -> int:
    """How many reply characters a client holding `last_event_id` has already received."""
    return max(0, last_event_id - TEXT_BASE_ID)
