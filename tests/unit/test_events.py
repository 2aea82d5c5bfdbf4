"""Event ids are positions in the reply; frames are the bytes every reader gets."""

from __future__ import annotations

import uuid

import pytest

from threadline.domain.events import (
    DoneEvent,
    EventIds,
    Frame,
    StartEvent,
    TokenEvent,
    UsageEvent,
    UsagePayload,
    decode_event,
    text_offset,
)
from threadline.domain.models import RunStatus

RUN, THREAD, MESSAGE = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
USAGE = UsagePayload(
    prompt_tokens=3,
    completion_tokens=2,
    cached_tokens=0,
    reasoning_tokens=0,
    total_tokens=5,
    source="measured",
)


def test_token_ids_count_reply_characters() -> None:
    ids = EventIds()
    start = StartEvent(run_id=RUN, thread_id=THREAD, message_id=MESSAGE, stream_url="/runs/x/stream")
    assert ids.next(start) == 1
    assert ids.next(TokenEvent(content="Hello")) == 7
    assert ids.next(TokenEvent(content=", world")) == 14
    assert text_offset(14) == len("Hello, world")
    assert ids.next(UsageEvent(usage=USAGE, model="m")) == 15
    assert ids.next(DoneEvent(run_id=RUN, thread_id=THREAD, status=RunStatus.COMPLETED, usage=USAGE)) == 16


def test_ids_never_go_backwards() -> None:
    ids = EventIds()
    ids.next(StartEvent(run_id=RUN, thread_id=THREAD, message_id=MESSAGE, stream_url=""))
    with pytest.raises(ValueError, match="does not follow"):
        ids.next(StartEvent(run_id=RUN, thread_id=THREAD, message_id=MESSAGE, stream_url=""))


def test_a_frame_is_one_sse_event_that_decodes_back() -> None:
    event = TokenEvent(content='quote " and\nnewline')
    frame = Frame.of(9, event)
    assert frame.data.startswith(b"id: 9\ndata: {")
    assert frame.data.endswith(b"\n\n")
    assert frame.data.count(b"\n") == 3
    assert decode_event(frame.data) == event
    assert not frame.terminal


def test_only_done_is_terminal() -> None:
    done = Frame.of(3, DoneEvent(run_id=RUN, thread_id=THREAD, status=RunStatus.FAILED, usage=None))
    sneaky = Frame.of(2, TokenEvent(content='"type":"done"'))
    assert done.terminal
    assert not sneaky.terminal
