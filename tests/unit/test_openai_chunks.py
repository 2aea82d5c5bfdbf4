"""Decoding the lines of an OpenAI chat completion stream into model chunks."""

from __future__ import annotations

import pytest

from threadline.adapters.openai_chat import chunks_of
from threadline.domain.models import Usage
from threadline.ports import ModelChunk, ModelError


def test_a_content_delta_is_text() -> None:
    line = 'data: {"id":"c","choices":[{"index":0,"delta":{"content":"Hel"},"finish_reason":null}]}'
    assert chunks_of(line) == [ModelChunk(text="Hel")]


def test_the_role_chunk_and_empty_content_give_nothing() -> None:
    line = 'data: {"choices":[{"index":0,"delta":{"role":"assistant","content":""}}],"usage":null}'
    assert chunks_of(line) == []


def test_the_finish_reason_and_the_usage_chunk() -> None:
    assert chunks_of('data: {"choices":[{"delta":{},"finish_reason":"length"}]}') == [
        ModelChunk(finish_reason="length")
    ]
    usage = (
        'data: {"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":3,"total_tokens":10,'
        '"prompt_tokens_details":{"cached_tokens":2},"completion_tokens_details":{"reasoning_tokens":1}}}'
    )
    assert chunks_of(usage) == [
        ModelChunk(
            usage=Usage(
                prompt_tokens=7, completion_tokens=3, cached_tokens=2, reasoning_tokens=1, total_tokens=10,
                source="measured",
            )
        )
    ]  # fmt: skip


@pytest.mark.parametrize("line", ["data: [DONE]", "", ": keep-alive", "event: message"])
def test_lines_without_a_chunk_give_nothing(line: str) -> None:
    assert chunks_of(line) == []


def test_an_error_event_is_a_model_error() -> None:
    with pytest.raises(ModelError, match="overloaded"):
        chunks_of('data: {"error":{"message":"overloaded","type":"server_error"}}')
