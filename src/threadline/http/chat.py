"""`/chat`: send a message and get the reply whole or as Server-Sent Events; read and clear history."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any, Literal
from uuid import UUID

import msgspec
from litestar import Controller, Request, delete, get, post
from litestar.di import NamedDependency
from litestar.params import FromHeader, FromQuery, HeaderParameter, JSONBody, QueryParameter
from litestar.response import Stream
from litestar.security.jwt import Token

from threadline.accounting import CHAT
from threadline.db.history import PostgresHistory
from threadline.domain.errors import InvalidInput
from threadline.domain.models import ChatTurn
from threadline.http.auth import Principal
from threadline.http.client_info import recorded_client
from threadline.http.schemas import (
    ChatRequest,
    ChatResponse,
    ClearHistoryResponse,
    HistoryMessage,
    HistoryResponse,
    RunError,
    SessionsResponse,
)
from threadline.http.sse import sse_response
from threadline.service.chat import ChatInput, ChatService
from threadline.service.lifecycle import RunKeeper
from threadline.service.streams import RunStreams
from threadline.service.turns import BusyPolicy, start_turn

AuthRequest = Request[Principal, Token, Any]
IdempotencyKey = Annotated[str | None, HeaderParameter(name="Idempotency-Key", max_length=200)]
HistoryLimit = Annotated[int, QueryParameter(ge=1, le=500)]
OnDisconnect = Literal["continue", "cancel"]
# How long `if_busy=enqueue` holds a request while the reply ahead of it finishes.
ENQUEUE_WAIT_S = 120.0


async def cancel_on_disconnect(
    frames: AsyncIterator[bytes], stop: Callable[[], object]
) -> AsyncIterator[bytes]:
    """Pass frames through; if the client leaves before the final one, stop the run."""
    finished = False
    try:
        async for frame in frames:
            yield frame
        finished = True
    finally:
        if not finished:
            stop()


def chat_input(
    data: ChatRequest, idempotency_key: str | None, client: dict[str, Any] | None = None
) -> ChatInput:
    if idempotency_key and data.client_message_id and idempotency_key != data.client_message_id:
        raise InvalidInput("Idempotency-Key and client_message_id differ; send one of them.")
    return ChatInput(
        message=data.message,
        thread_id=data.thread_id,
        agent=data.agent,
        client_message_id=data.client_message_id or idempotency_key,
        metadata=data.metadata,
        client=client or {},
    )


async def _start(
    request: AuthRequest,
    data: ChatRequest,
    chat: ChatService,
    keeper: RunKeeper,
    idempotency_key: str | None,
    if_busy: BusyPolicy,
) -> ChatTurn:
    """The caller's message committed with its run, as both `/chat` routes take it."""
    message = chat_input(data, idempotency_key, recorded_client(request))
    return await start_turn(chat, keeper, request.user.user_id, message, if_busy, max_wait_s=ENQUEUE_WAIT_S)


class ChatController(Controller):
    path = "/chat"
    tags = ["chat"]

    @post(
        "/", status_code=200, summary="Send a message and wait for the whole reply", opt={"rate_limit": CHAT}
    )
    async def send(
        self,
        request: AuthRequest,
        data: JSONBody[ChatRequest],
        chat: NamedDependency[ChatService],
        streams: NamedDependency[RunStreams],
        keeper: NamedDependency[RunKeeper],
        idempotency_key: FromHeader[IdempotencyKey] = None,
        if_busy: FromQuery[BusyPolicy] = BusyPolicy.REJECT,
    ) -> ChatResponse:
        turn = await _start(request, data, chat, keeper, idempotency_key, if_busy)
        result = await streams.result(turn.run.id)
        return ChatResponse(
            response=result.text,
            thread_id=turn.run.thread_id,
            run_id=turn.run.id,
            message_id=turn.run.assistant_message_id,
            status=result.status,
            usage=result.usage,
            error=RunError(code=result.error.code, message=result.error.message) if result.error else None,
        )

    @post(
        "/stream",
        status_code=200,
        summary="Send a message; the reply streams as Server-Sent Events",
        opt={"rate_limit": CHAT},
    )
    async def stream(
        self,
        request: AuthRequest,
        data: JSONBody[ChatRequest],
        chat: NamedDependency[ChatService],
        streams: NamedDependency[RunStreams],
        keeper: NamedDependency[RunKeeper],
        idempotency_key: FromHeader[IdempotencyKey] = None,
        on_disconnect: FromQuery[OnDisconnect] = "continue",
        if_busy: FromQuery[BusyPolicy] = BusyPolicy.REJECT,
    ) -> Stream:
        turn = await _start(request, data, chat, keeper, idempotency_key, if_busy)
        retry_ms = request.app.state.services.settings.stream.retry_ms
        frames = streams.follow(turn.run.id)
        if on_disconnect == "cancel":
            frames = cancel_on_disconnect(frames, lambda: chat.stop(turn.run.id))
        return sse_response(frames, run_id=turn.run.id, retry_ms=retry_ms)

    @get("/history", summary="The newest messages of a thread (the latest active one by default)")
    async def read_history(
        self,
        request: AuthRequest,
        history: NamedDependency[PostgresHistory],
        thread_id: FromQuery[UUID | None] = None,
        limit: FromQuery[HistoryLimit] = 50,
    ) -> HistoryResponse:
        found = await history.history(request.user.user_id, thread_id, limit)
        messages = [
            HistoryMessage(
                id=m.id,
                role=m.role,
                content=m.content,
                status=m.status,
                timestamp=m.created_at,
                seq=m.seq,
                run_id=m.run_id,
            )
            for m in found.messages
        ]
        return HistoryResponse(
            thread_id=found.thread_id, message_count=found.message_count, messages=messages
        )

    @delete("/history", status_code=200, summary="Delete every message of a thread, keeping the thread")
    async def clear_history(
        self,
        request: AuthRequest,
        history: NamedDependency[PostgresHistory],
        thread_id: FromQuery[UUID | None] = None,
    ) -> ClearHistoryResponse:
        cleared = await history.clear(request.user.user_id, thread_id)
        message = "History cleared." if cleared else "There was no active thread to clear."
        return ClearHistoryResponse(success=cleared is not None, message=message, thread_id=cleared)

    @get("/sessions", summary="The caller's sessions at a glance")
    async def sessions(
        self, request: AuthRequest, history: NamedDependency[PostgresHistory]
    ) -> SessionsResponse:
        found = await history.sessions(request.user.user_id)
        return msgspec.convert(msgspec.to_builtins(found), SessionsResponse)
