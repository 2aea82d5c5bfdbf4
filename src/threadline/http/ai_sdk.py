"""`/ai-sdk/chat`: the Vercel AI SDK's default chat transport, served from Threadline's runs.

`useChat` posts the whole conversation as UI messages; Threadline keeps its own history, so only the
newest user message is read and persisted, into the thread the chat id names (see
`threadline.service.conversations`). The reply is the run's stream in the UI message stream protocol.
"""

from __future__ import annotations

import hashlib
from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody
from litestar.response import Stream
from litestar.security.jwt import Token

from threadline.accounting import CHAT
from threadline.domain.errors import InvalidInput
from threadline.http.ai_sdk_stream import HEADERS, ui_message_stream
from threadline.http.auth import Principal
from threadline.http.chat import OnDisconnect, cancel_on_disconnect
from threadline.http.schemas import AgentSlug
from threadline.http.session_dependencies import SESSION_DEPENDENCIES
from threadline.ports import ChatStore
from threadline.service.chat import ChatInput, ChatService
from threadline.service.conversations import MAX_CHAT_ID_CHARS, open_thread, thread_id_for_chat
from threadline.service.streams import RunStreams
from threadline.sessions import Sessions

AuthRequest = Request[Principal, Token, Any]
ChatId = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_CHAT_ID_CHARS)]
UIMessageId = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
SOURCE = "ai-sdk"


class TextPart(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, rename="camel"):
    """A UI message's `text` part; the other part types (files, tools, data…) are not read."""

    type: Literal["text"]
    text: str
    state: Literal["streaming", "done"] | None = None
    provider_metadata: dict[str, Any] | None = None


class UIMessage(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    id: UIMessageId
    role: Literal["system", "user", "assistant"]
    parts: list[dict[str, Any]]
    metadata: Any = None

    def text(self) -> str:
        try:
            texts = [msgspec.convert(p, TextPart).text for p in self.parts if p.get("type") == "text"]
        except msgspec.ValidationError as error:
            raise InvalidInput(f"A text part of message {self.id!r} is invalid: {error}") from None
        return "\n".join(texts)


class AiSdkChatRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, rename="camel"):
    """What `DefaultChatTransport` posts; `agent` is Threadline's own, sent through the transport's `body`."""

    id: ChatId
    messages: Annotated[list[UIMessage], msgspec.Meta(min_length=1)]
    trigger: Literal["submit-message", "regenerate-message"] = "submit-message"
    message_id: UIMessageId | None = None
    agent: AgentSlug | None = None


def newest_user_message(data: AiSdkChatRequest) -> UIMessage:
    newest = data.messages[-1]
    if newest.role != "user":
        raise InvalidInput("The newest message must be the user's.")
    return newest


def client_message_id(chat_id: str, message_id: str) -> str:
    """A retried POST of the same UI message replays its run instead of asking the model twice."""
    return "ai-sdk:" + hashlib.sha256(f"{chat_id}\n{message_id}".encode()).hexdigest()[:40]


def stream_response(frames: Any, *, thread_id: object, run_id: object) -> Stream:
    return Stream(
        ui_message_stream(frames),
        media_type="text/event-stream",
        headers={**HEADERS, "X-Thread-Id": str(thread_id), "X-Run-Id": str(run_id)},
    )


class AiSdkController(Controller):
    path = "/ai-sdk/chat"
    tags = ["ai-sdk"]
    dependencies = SESSION_DEPENDENCIES

    @post(
        "/",
        status_code=200,
        summary="AI SDK chat: persist the newest user message, stream the reply (UI message stream v1)",
        opt={"rate_limit": CHAT},
    )
    async def send(
        self,
        request: AuthRequest,
        data: JSONBody[AiSdkChatRequest],
        chat: NamedDependency[ChatService],
        streams: NamedDependency[RunStreams],
        chat_store: NamedDependency[ChatStore],
        sessions: NamedDependency[Sessions],
        on_disconnect: FromQuery[OnDisconnect] = "continue",
    ) -> Stream:
        user_id = request.user.user_id
        message = newest_user_message(data)
        thread = await open_thread(chat_store, user_id, thread_id_for_chat(user_id, data.id), data.agent)
        if data.trigger == "regenerate-message":
            # The SDK dropped the reply it regenerates; Threadline keeps it as an earlier version.
            turn = await sessions.regenerator.regenerate(user_id, thread.id)
        else:
            turn = await chat.start_turn(
                user_id,
                ChatInput(
                    message=message.text(),
                    thread_id=thread.id,
                    client_message_id=client_message_id(data.id, message.id),
                    metadata={"source": SOURCE},
                ),
            )
        run_id = turn.run.id
        frames = streams.follow(run_id)
        if on_disconnect == "cancel":
            frames = cancel_on_disconnect(frames, lambda: chat.stop(run_id))
        return stream_response(frames, thread_id=thread.id, run_id=run_id)

    @get(
        "/{chat_id:str}/stream",
        summary="Resume: replay the chat's running reply from its start, or 204 when nothing runs",
        status_code=200,
    )
    async def resume(
        self,
        request: AuthRequest,
        chat_id: FromPath[ChatId],
        streams: NamedDependency[RunStreams],
        chat_store: NamedDependency[ChatStore],
    ) -> Stream | Response[None]:
        user_id = request.user.user_id
        thread_id = thread_id_for_chat(user_id, chat_id)
        run_id = await chat_store.live_run(user_id, thread_id)
        if run_id is None:
            return Response(None, status_code=204)
        return stream_response(streams.follow(run_id), thread_id=thread_id, run_id=run_id)
