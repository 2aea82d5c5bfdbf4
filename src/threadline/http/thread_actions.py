"""A thread's messages page by page, a regenerated (or edited-then-regenerated) reply, an export."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from uuid import UUID

import msgspec
from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import (
    OpenAPIHeader,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    Schema,
)
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter
from litestar.response import Response, Stream
from litestar.security.jwt import Token

from threadline.accounting import CHAT
from threadline.domain.models import Message, Role, Thread
from threadline.http.auth import Principal
from threadline.http.chat import OnDisconnect, cancel_on_disconnect
from threadline.http.client_info import recorded_client
from threadline.http.session_dependencies import SESSION_DEPENDENCIES
from threadline.http.session_schemas import (
    MessageOut,
    MessagePage,
    Pagination,
    Regenerate,
    ThreadExport,
    ThreadOut,
)
from threadline.http.sse import sse_response
from threadline.service.chat import ChatService
from threadline.service.streams import RunStreams
from threadline.sessions import Sessions

AuthRequest = Request[Principal, Token, Any]
Page = Annotated[int, QueryParameter(ge=1, le=1_000_000)]
PerPage = Annotated[int, QueryParameter(ge=1, le=100, description="messages per page, at most 100")]
ExportFormat = Literal["json", "markdown"]
ROLE_NAMES = {Role.USER: "User", Role.ASSISTANT: "Assistant", Role.SYSTEM: "System"}
EXPORT_RESPONSES = {
    200: ResponseSpec(
        data_container=ThreadExport,
        description="The thread as `threadline.thread.v1` JSON, or as Markdown text with `format=markdown`",
        generate_examples=False,
    )
}


@dataclass
class ExportOperation(Operation):
    """The export answers JSON or Markdown by `format`; Litestar documents one media type per response."""

    def __post_init__(self) -> None:
        ok = (self.responses or {}).get("200")
        if not isinstance(ok, OpenAPIResponse) or ok.content is None:
            return
        ok.content["text/markdown"] = OpenAPIMediaType(schema=Schema(type=OpenAPIType.STRING))
        ok.headers = {
            **(ok.headers or {}),
            "Content-Disposition": OpenAPIHeader(
                schema=Schema(type=OpenAPIType.STRING),
                description='`attachment; filename="thread-<id>.json"` (`.md` for Markdown)',
            ),
        }


def render_markdown(thread: Thread, messages: list[Message], exported_at: datetime) -> str:
    """A transcript a person can read: a heading, the thread's facts, then each message."""
    lines = [
        f"# {thread.title or 'Untitled thread'}",
        "",
        f"- Thread: `{thread.id}`",
        f"- Agent: {thread.agent}",
        f"- Status: {thread.status.value}",
        f"- Created: {thread.created_at.astimezone(UTC):%Y-%m-%d %H:%M UTC}",
        f"- Exported: {exported_at:%Y-%m-%d %H:%M UTC}",
        f"- Messages: {len(messages)}",
    ]
    for message in messages:
        heading = (
            f"## {ROLE_NAMES[message.role]} · {message.created_at.astimezone(UTC):%Y-%m-%d %H:%M:%S UTC}"
        )
        if message.status is not None and message.status.value != "completed":
            heading += f" ({message.status.value})"
        lines += ["", "---", "", heading, "", message.content or "_(no text)_"]
    return "\n".join(lines) + "\n"


class ThreadActionsController(Controller):
    path = "/threads"
    tags = ["threads"]
    dependencies = SESSION_DEPENDENCIES

    @get("/{thread_id:uuid}/messages", summary="A thread's messages in order, paged, with the thread")
    async def messages(
        self,
        request: AuthRequest,
        thread_id: FromPath[UUID],
        sessions: NamedDependency[Sessions],
        page: FromQuery[Page] = 1,
        per_page: FromQuery[PerPage] = 50,
        include_superseded: FromQuery[bool] = False,
    ) -> MessagePage:
        thread, messages, total = await sessions.threads.messages(
            request.user.user_id,
            thread_id,
            page=page,
            per_page=per_page,
            include_superseded=include_superseded,
        )
        return MessagePage(
            thread_info=ThreadOut.of(thread),
            messages=[MessageOut.of(message) for message in messages],
            pagination=Pagination.of(page, per_page, total),
        )

    @post(
        "/{thread_id:uuid}/regenerate",
        status_code=200,
        summary="Answer the last message again (replacing it first, with `message`), streamed as SSE",
        opt={"rate_limit": CHAT},
    )
    async def regenerate(
        self,
        request: AuthRequest,
        thread_id: FromPath[UUID],
        sessions: NamedDependency[Sessions],
        chat: NamedDependency[ChatService],
        streams: NamedDependency[RunStreams],
        data: JSONBody[Regenerate | None] = None,
        on_disconnect: FromQuery[OnDisconnect] = "continue",
    ) -> Stream:
        turn = await sessions.regenerator.regenerate(
            request.user.user_id,
            thread_id,
            content=data.message if data is not None else None,
            client=recorded_client(request),
        )
        frames = streams.follow(turn.run.id)
        if on_disconnect == "cancel":
            frames = cancel_on_disconnect(frames, lambda: chat.stop(turn.run.id))
        retry_ms: int = request.app.state.services.settings.stream.retry_ms
        return sse_response(frames, run_id=turn.run.id, retry_ms=retry_ms)

    @get(
        "/{thread_id:uuid}/export",
        summary="The whole thread as JSON or Markdown, for download",
        responses=EXPORT_RESPONSES,
        operation_class=ExportOperation,
    )
    async def export(
        self,
        request: AuthRequest,
        thread_id: FromPath[UUID],
        sessions: NamedDependency[Sessions],
        format: FromQuery[ExportFormat] = "json",
    ) -> Response[bytes]:
        thread, messages, _ = await sessions.threads.messages(
            request.user.user_id, thread_id, page=1, per_page=None, include_superseded=False
        )
        exported_at = datetime.now(UTC)
        if format == "markdown":
            body = render_markdown(thread, messages, exported_at).encode()
            media_type, suffix = "text/markdown; charset=utf-8", "md"
        else:
            document = ThreadExport(
                format="threadline.thread.v1",
                exported_at=exported_at,
                thread=ThreadOut.of(thread),
                messages=[MessageOut.of(message) for message in messages],
            )
            body, media_type, suffix = msgspec.json.encode(document), "application/json", "json"
        return Response(
            body,
            media_type=media_type,
            headers={"Content-Disposition": f'attachment; filename="thread-{thread.id}.{suffix}"'},
        )
