"""A run's events as the Vercel AI SDK's UI message stream (v1): one JSON part per SSE `data:` line.

`start` carries the assistant message id and the thread and run ids; the reply is one text part
(`text-start`, `text-delta`…, `text-end`); the run's usage rides in `messageMetadata`. A completed run
ends with `finish`, a failed one with `error` then `finish` (reason `error`), a cancelled one with
`message-metadata` then `abort`. The stream always closes with `data: [DONE]`. Heartbeat comments
pass through: the SDK's parser skips them, and proxies keep the connection open.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Literal

import msgspec

from threadline.domain.events import (
    DoneEvent,
    ErrorEvent,
    StartEvent,
    TokenEvent,
    UsageEvent,
    UsagePayload,
    decode_event,
)
from threadline.domain.models import RunStatus

HEADERS = {
    "x-vercel-ai-ui-message-stream": "v1",
    "Cache-Control": "no-cache, no-transform",
    "X-Accel-Buffering": "no",
}
DONE = b"data: [DONE]\n\n"
TEXT_PART_ID = "text"
FinishReason = Literal["stop", "length", "content-filter", "tool-calls", "error", "other"]


class _Part(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", rename="camel", omit_defaults=True):
    pass


class StartPart(_Part, tag="start", frozen=True, kw_only=True):
    message_id: str
    message_metadata: dict[str, Any]


class TextStartPart(_Part, tag="text-start", frozen=True, kw_only=True):
    id: str


class TextDeltaPart(_Part, tag="text-delta", frozen=True, kw_only=True):
    id: str
    delta: str


class TextEndPart(_Part, tag="text-end", frozen=True, kw_only=True):
    id: str


class ErrorPart(_Part, tag="error", frozen=True, kw_only=True):
    error_text: str


class FinishPart(_Part, tag="finish", frozen=True, kw_only=True):
    finish_reason: FinishReason
    message_metadata: dict[str, Any]


class MessageMetadataPart(_Part, tag="message-metadata", frozen=True, kw_only=True):
    message_metadata: dict[str, Any]


class AbortPart(_Part, tag="abort", frozen=True, kw_only=True):
    reason: str


UIPart = (
    StartPart
    | TextStartPart
    | TextDeltaPart
    | TextEndPart
    | ErrorPart
    | FinishPart
    | MessageMetadataPart
    | AbortPart
)
_encoder = msgspec.json.Encoder()


def encode_part(part: UIPart) -> bytes:
    return b"data: %s\n\n" % _encoder.encode(part)


def usage_metadata(usage: UsagePayload | None) -> dict[str, Any] | None:
    """Threadline's usage in the AI SDK's `LanguageModelUsage` vocabulary, plus where it came from."""
    if usage is None:
        return None
    return {
        "inputTokens": usage.prompt_tokens,
        "outputTokens": usage.completion_tokens,
        "totalTokens": usage.total_tokens,
        "cachedInputTokens": usage.cached_tokens,
        "reasoningTokens": usage.reasoning_tokens,
        "source": usage.source,
    }


class _Translation:
    """The state of one stream: whether the text part is open, what usage and errors were seen."""

    def __init__(self) -> None:
        self.text_open = False
        self.errored = False
        self.usage: UsagePayload | None = None
        self.model: str | None = None
        self.ids: dict[str, str] = {}

    def parts(self, event: object) -> list[UIPart]:
        if isinstance(event, StartEvent):
            self.ids = {"threadId": str(event.thread_id), "runId": str(event.run_id)}
            return [StartPart(message_id=str(event.message_id), message_metadata=dict(self.ids))]
        if isinstance(event, TokenEvent):
            opening: list[UIPart] = [] if self.text_open else [TextStartPart(id=TEXT_PART_ID)]
            self.text_open = True
            return [*opening, TextDeltaPart(id=TEXT_PART_ID, delta=event.content)]
        if isinstance(event, UsageEvent):
            self.usage, self.model = event.usage, event.model
            return []
        if isinstance(event, ErrorEvent):
            self.errored = True
            return [*self._close_text(), ErrorPart(error_text=event.message)]
        if isinstance(event, DoneEvent):
            return self._done(event)
        return []  # `sources` and `status` have no part in this protocol

    def _close_text(self) -> list[UIPart]:
        if not self.text_open:
            return []
        self.text_open = False
        return [TextEndPart(id=TEXT_PART_ID)]

    def _done(self, event: DoneEvent) -> list[UIPart]:
        metadata: dict[str, Any] = {**self.ids, "status": event.status.value}
        if self.model is not None:
            metadata["model"] = self.model
        if (usage := usage_metadata(event.usage or self.usage)) is not None:
            metadata["usage"] = usage
        closing = self._close_text()
        if event.status is RunStatus.COMPLETED:
            return [*closing, FinishPart(finish_reason="stop", message_metadata=metadata)]
        if event.status is RunStatus.CANCELLED:
            return [*closing, MessageMetadataPart(message_metadata=metadata), AbortPart(reason="cancelled")]
        failure: list[UIPart] = (
            [] if self.errored else [ErrorPart(error_text=f"The reply ended {event.status}.")]
        )
        return [*closing, *failure, FinishPart(finish_reason="error", message_metadata=metadata)]


async def ui_message_stream(frames: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Translate a run's SSE frames (as `RunStreams.follow` yields them) into UI message stream parts."""
    translation = _Translation()
    async for data in frames:
        if data.startswith(b":"):
            yield data
            continue
        for part in translation.parts(decode_event(data)):
            yield encode_part(part)
    yield DONE
