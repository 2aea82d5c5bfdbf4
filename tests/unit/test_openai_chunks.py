"""Decoding the lines of an OpenAI chat completion stream into model chunks."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable

import pytest

from threadline.adapters.openai_chat import MAX_LINE_BYTES, chunks_of, lines_of
from threadline.domain.models import Usage
from threadline.ports import ModelChunk, ModelError


def test_a_content_delta_is_text() -> None:
    line = b'data: {"id":"c","choices":[{"index":0,"delta":{"content":"Hel"},"finish_reason":null}]}'
    assert chunks_of(line) == [ModelChunk(text="Hel")]


def test_the_role_chunk_and_empty_content_give_nothing() -> None:
    line = b'data: {"choices":[{"index":0,"delta":{"role":"assistant","content":""}}],"usage":null}'
    assert chunks_of(line) == []


def test_the_finish_reason_and_the_usage_chunk() -> None:
    assert chunks_of(b'data: {"choices":[{"delta":{},"finish_reason":"length"}]}') == [
        ModelChunk(finish_reason="length")
    ]
    usage = (
        b'data: {"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":3,"total_tokens":10,'
        b'"prompt_tokens_details":{"cached_tokens":2},"completion_tokens_details":{"reasoning_tokens":1}}}'
    )
    assert chunks_of(usage) == [
        ModelChunk(
            usage=Usage(
                prompt_tokens=7, completion_tokens=3, cached_tokens=2, reasoning_tokens=1, total_tokens=10,
                source="measured",
            )
        )
    ]  # fmt: skip


@pytest.mark.parametrize("line", [b"data: [DONE]", b"data:[DONE] ", b"", b": keep-alive", b"event: message"])
def test_lines_without_a_chunk_give_nothing(line: bytes) -> None:
    assert chunks_of(line) == []


def test_an_error_event_is_a_model_error() -> None:
    with pytest.raises(ModelError, match="overloaded"):
        chunks_of(b'data: {"error":{"message":"overloaded","type":"server_error"}}')


async def _body(parts: Iterable[bytes]) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def test_lines_are_split_across_network_reads_and_line_ends() -> None:
    parts = [b'data: {"a"', b":1}\r\n\r\ndata: [DO", b"NE]\n\n: ping\ndata: tail"]
    assert [line async for line in lines_of(_body(parts))] == [
        b'data: {"a":1}', b"", b"data: [DONE]", b"", b": ping", b"data: tail",
    ]  # fmt: skip


async def test_a_line_without_an_end_cannot_grow_past_the_cap() -> None:
    endless = [b"x" * 65_536] * (MAX_LINE_BYTES // 65_536 + 2)
    with pytest.raises(ModelError, match="longer than"):
        _ = [line async for line in lines_of(_body(endless))]
