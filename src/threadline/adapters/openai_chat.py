"""`OpenAIChat`: any OpenAI-compatible chat completions endpoint, streamed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import msgspec
import openai
from openai import AsyncOpenAI

from threadline.domain.models import Usage
from threadline.ports import ModelChunk, ModelError, ModelRequest
from threadline.settings import ModelSettings


def create_client(settings: ModelSettings) -> AsyncOpenAI:
    # The read timeout bounds the silence between two chunks: it is the stream's idle timeout.
    timeout = openai.Timeout(
        connect=settings.connect_timeout_s, read=settings.idle_timeout_s, write=30.0, pool=10.0
    )
    return AsyncOpenAI(
        base_url=settings.base_url,
        api_key=settings.api_key.reveal() or "not-needed",
        timeout=timeout,
        max_retries=settings.max_retries,
    )


# No chunk of a chat completion comes near this; a line that does is not one.
MAX_LINE_BYTES = 1_048_576


class _Delta(msgspec.Struct):
    content: str | None = None


class _Choice(msgspec.Struct):
    delta: _Delta | None = None
    finish_reason: str | None = None


class _PromptDetails(msgspec.Struct):
    cached_tokens: int | None = None


class _CompletionDetails(msgspec.Struct):
    reasoning_tokens: int | None = None


class _Usage(msgspec.Struct):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    prompt_tokens_details: _PromptDetails | None = None
    completion_tokens_details: _CompletionDetails | None = None


class _Chunk(msgspec.Struct):
    """The fields of a `chat.completion.chunk` that a run uses; the rest are skipped unread."""

    choices: list[_Choice] = msgspec.field(default_factory=list)
    usage: _Usage | None = None
    error: dict[str, Any] | None = None


_decode_chunk = msgspec.json.Decoder(_Chunk).decode


def _usage(usage: _Usage) -> Usage:
    prompt_details, completion_details = usage.prompt_tokens_details, usage.completion_tokens_details
    return Usage(
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        cached_tokens=(prompt_details.cached_tokens or 0) if prompt_details else 0,
        reasoning_tokens=(completion_details.reasoning_tokens or 0) if completion_details else 0,
        total_tokens=usage.total_tokens,
        source="measured",
    )


def chunks_of(line: bytes) -> list[ModelChunk]:
    """The model chunks in one line of the SSE stream; `[DONE]`, comments and other fields give none."""
    if not line.startswith(b"data:"):
        return []
    payload = line[5:].strip()
    if payload == b"[DONE]":
        return []
    chunk = _decode_chunk(payload)
    if chunk.error is not None:
        message = chunk.error.get("message")
        raise ModelError("upstream_error", f"The model failed mid-reply: {str(message)[:300]}")
    found = [ModelChunk(usage=_usage(chunk.usage))] if chunk.usage is not None else []
    for choice in chunk.choices:
        if choice.delta is not None and choice.delta.content:
            found.append(ModelChunk(text=choice.delta.content))
        if choice.finish_reason:
            found.append(ModelChunk(finish_reason=choice.finish_reason))
    return found


class OpenAIChat:
    """The `ChatModel` port over `AsyncOpenAI`; retries (SDK policy) happen only before the stream opens."""

    provider = "openai"

    def __init__(self, client: AsyncOpenAI, *, include_usage: bool) -> None:
        self._client = client
        self._include_usage = include_usage

    def _arguments(self, request: ModelRequest) -> dict[str, Any]:
        messages = [{"role": m.role.value, "content": m.content} for m in request.messages]
        arguments: dict[str, Any] = {
            "model": request.model,
            # The conversation goes in `extra_body`, which the SDK sends as given: passed as
            # `messages`, the SDK walks every message against its typed schema first, a cost that
            # grows with the history (a third of the cost of opening a reply, profiled at 20 streams).
            "messages": [],
            "extra_body": {"messages": messages},
            "stream": True,
        }
        if self._include_usage:
            arguments["stream_options"] = {"include_usage": True}
        if request.temperature is not None:
            arguments["temperature"] = request.temperature
        if request.max_output_tokens is not None:
            arguments["max_tokens"] = request.max_output_tokens
        return arguments

    async def stream(self, request: ModelRequest) -> AsyncIterator[ModelChunk]:
        # The SDK makes the call (request, auth, retries before the stream opens, status errors);
        # the stream's lines are decoded here with msgspec. Profiled at 50 streams, the SDK's
        # per-chunk pydantic models were over half of the CPU a reply cost in this adapter.
        opening = self._client.chat.completions.with_streaming_response.create(**self._arguments(request))
        try:
            response = await opening.__aenter__()
        except openai.APIStatusError as error:
            raise ModelError(f"upstream_{error.status_code}", _describe(error)) from error
        except openai.APITimeoutError as error:
            raise ModelError("upstream_timeout", "The model did not answer in time.") from error
        except openai.APIConnectionError as error:
            raise ModelError("upstream_unreachable", "The model endpoint could not be reached.") from error
        try:
            async for line in lines_of(response.http_response.aiter_bytes()):
                for chunk in chunks_of(line):
                    yield chunk
        except ModelError:
            raise
        except Exception as error:
            # The SDK's transport raises its own HTTP library's errors mid-stream; classify by name
            # rather than pinning that library, which has changed between SDK releases.
            if "Timeout" in type(error).__name__:
                raise ModelError("upstream_stalled", "The model stopped sending mid-reply.") from error
            raise ModelError("upstream_stream_error", "The model's stream broke mid-reply.") from error
        finally:
            # Closing the response is what tells the upstream to stop generating: never skip it.
            with anyio.CancelScope(shield=True):
                await response.close()


async def lines_of(body: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The body's lines, without their line ends. Split here, on bytes: the text and line decoders
    of the HTTP library cost more per chunk than decoding the chunk's JSON."""
    rest = b""
    async for data in body:
        lines = (rest + data).split(b"\n")
        rest = lines.pop()
        if len(rest) > MAX_LINE_BYTES:
            raise ModelError("upstream_stream_error", "The model sent a line longer than 1 MiB.")
        for line in lines:
            yield line.rstrip(b"\r")
    if rest:
        yield rest.rstrip(b"\r")


def _describe(error: openai.APIStatusError) -> str:
    body = error.body
    if isinstance(body, dict):
        message = body.get("message") or body.get("error", {}).get("message")
        if isinstance(message, str):
            return f"The model endpoint answered {error.status_code}: {message[:300]}"
    return f"The model endpoint answered {error.status_code}."
