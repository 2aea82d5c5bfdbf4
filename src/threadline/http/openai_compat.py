"""`/v1`: an OpenAI-compatible Chat Completions API over Threadline's threads and runs.

The API key is the caller's Threadline JWT (the OpenAI SDKs send it as `Authorization: Bearer`).
Threadline is stateful: each request persists its last message, a user message, into a thread, and
the model sees that thread's stored history, not the earlier `messages` of the request. The thread
is the one `X-Thread-Id` names (created if no one has that id), else a new one; either way its id
comes back in the `X-Thread-Id` response header. `model` names an agent (see `GET /v1/models`);
any other model name runs the default agent.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Annotated, Any
from uuid import UUID

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.exceptions import HTTPException
from litestar.params import FromHeader, HeaderParameter, JSONBody
from litestar.response import Stream
from litestar.security.jwt import Token

from threadline.accounting import CHAT
from threadline.domain.errors import InvalidInput
from threadline.domain.events import DoneEvent, ErrorEvent, StartEvent, TokenEvent, UsagePayload, decode_event
from threadline.domain.models import RunStatus
from threadline.http.auth import Principal
from threadline.http.openai_schemas import (
    AssistantMessage,
    ChatCompletion,
    ChatCompletionChunk,
    Choice,
    ChunkChoice,
    CompletionRequest,
    CompletionTokensDetails,
    CompletionUsage,
    Delta,
    Model,
    ModelList,
    PromptTokensDetails,
)
from threadline.ports import ChatStore
from threadline.service.chat import ChatInput, ChatService
from threadline.service.conversations import new_thread, open_thread
from threadline.service.streams import RunStreams
from threadline.services import Services

AuthRequest = Request[Principal, Token, Any]
ThreadIdHeader = Annotated[UUID | None, HeaderParameter(name="X-Thread-Id")]
FAILED = {RunStatus.FAILED, RunStatus.TIMEOUT, RunStatus.INTERRUPTED}
SOURCE = "openai-compat"
_encoder = msgspec.json.Encoder()


def check(data: CompletionRequest) -> str:
    """The text of the new user message; refuses options whose output Threadline cannot produce."""
    if data.n not in (None, 1):
        raise InvalidInput("`n` must be 1: a thread records one reply per message.")
    if data.tools or data.functions:
        raise InvalidInput("Tools and functions are not supported.")
    if data.audio is not None or "audio" in (data.modalities or []):
        raise InvalidInput("Audio output is not supported.")
    if data.logprobs:
        raise InvalidInput("Log probabilities are not supported.")
    if not data.messages or data.messages[-1].role != "user":
        raise InvalidInput("The last message must be a user message: it is the one Threadline persists.")
    return data.messages[-1].text()


def usage_of(payload: UsagePayload | None) -> CompletionUsage | None:
    if payload is None:
        return None
    return CompletionUsage(
        prompt_tokens=payload.prompt_tokens,
        completion_tokens=payload.completion_tokens,
        total_tokens=payload.total_tokens,
        prompt_tokens_details=PromptTokensDetails(cached_tokens=payload.cached_tokens),
        completion_tokens_details=CompletionTokensDetails(reasoning_tokens=payload.reasoning_tokens),
    )


def _sse(value: object) -> bytes:
    return b"data: %s\n\n" % _encoder.encode(value)


async def completion_chunks(
    frames: AsyncIterator[bytes], *, completion_id: str, model: str, include_usage: bool
) -> AsyncIterator[bytes]:
    """A run's frames as `chat.completion.chunk` events, ending with the usage chunk when asked."""
    created = int(time.time())

    def chunk(delta: Delta, finish_reason: str | None = None) -> bytes:
        choice = ChunkChoice(delta=delta, finish_reason=finish_reason)
        return _sse(ChatCompletionChunk(id=completion_id, created=created, model=model, choices=[choice]))

    error: dict[str, Any] | None = None
    async for data in frames:
        if data.startswith(b":"):
            yield data  # heartbeat comment: the SDKs skip it, proxies see traffic
            continue
        event = decode_event(data)
        if isinstance(event, StartEvent):
            yield chunk(Delta(role="assistant", content=""))
        elif isinstance(event, TokenEvent):
            yield chunk(Delta(content=event.content))
        elif isinstance(event, DoneEvent):
            if event.status in FAILED:
                error = {"message": f"The reply ended {event.status}.", "type": "server_error", "code": None}
                break
            yield chunk(Delta(), "stop")
            if include_usage:
                usage = usage_of(event.usage)
                yield _sse(
                    ChatCompletionChunk(
                        id=completion_id, created=created, model=model, choices=[], usage=usage
                    )
                )
        elif isinstance(event, ErrorEvent):
            error = {"message": event.message, "type": "server_error", "code": event.code}
    if error is not None:
        yield _sse({"error": {**error, "param": None}})
    yield b"data: [DONE]\n\n"


class OpenAICompatController(Controller):
    path = "/v1"
    tags = ["openai-compatible"]

    @get("/models", summary="The agents, as OpenAI models: `model` picks the agent of a new thread")
    async def models(
        self, chat_store: NamedDependency[ChatStore], services: NamedDependency[Services]
    ) -> ModelList:
        default_model = services.settings.model.default_model
        return ModelList(
            data=[
                Model(id=a.slug, name=a.name, underlying_model=a.model or default_model)
                for a in await chat_store.agents()
            ]
        )

    @post(
        "/chat/completions",
        status_code=200,
        summary="OpenAI-compatible chat completion, persisted into a thread",
        opt={"rate_limit": CHAT},
    )
    async def complete(
        self,
        request: AuthRequest,
        data: JSONBody[CompletionRequest],
        chat: NamedDependency[ChatService],
        streams: NamedDependency[RunStreams],
        chat_store: NamedDependency[ChatStore],
        thread_id: FromHeader[ThreadIdHeader] = None,
    ) -> Stream | Response[ChatCompletion]:
        store = chat_store
        user_id = request.user.user_id
        text = check(data)
        agent = data.model if data.model in {a.slug for a in await store.agents()} else None
        thread = await (
            open_thread(store, user_id, thread_id, agent) if thread_id else new_thread(store, user_id, agent)
        )
        metadata: dict[str, Any] = {
            "source": SOURCE,
            **({"client_metadata": data.metadata} if data.metadata else {}),
        }
        turn = await chat.start_turn(user_id, ChatInput(message=text, thread_id=thread.id, metadata=metadata))
        run = turn.run
        completion_id = f"chatcmpl-{run.id.hex}"
        headers = {"X-Thread-Id": str(thread.id), "X-Run-Id": str(run.id)}
        if data.stream:
            chunks = completion_chunks(
                streams.follow(run.id),
                completion_id=completion_id,
                model=run.model,
                include_usage=data.include_usage,
            )
            return Stream(
                chunks,
                media_type="text/event-stream",
                headers={**headers, "Cache-Control": "no-cache, no-transform", "X-Accel-Buffering": "no"},
            )
        result = await streams.result(run.id)
        if result.status in FAILED:
            detail = result.error.message if result.error else f"The reply ended {result.status}."
            raise HTTPException(status_code=502, detail=detail, headers=headers)
        choice = Choice(message=AssistantMessage(content=result.text), finish_reason="stop")
        completion = ChatCompletion(
            id=completion_id,
            created=int(time.time()),
            model=run.model,
            choices=[choice],
            usage=usage_of(result.usage),
        )
        return Response(completion, headers=headers)
