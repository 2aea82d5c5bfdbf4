"""`/runs`: a run's state, its stream from any point (refreshes, `EventSource`), and cancellation."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.params import FromHeader, FromPath, FromQuery, HeaderParameter
from litestar.response import Stream
from litestar.security.jwt import Token

from threadline.domain.errors import NotFound
from threadline.domain.events import UsagePayload
from threadline.http.auth import Principal, stream_reader
from threadline.http.schemas import RunResponse
from threadline.http.sse import parse_last_event_id, sse_response, stream_path
from threadline.ports import ChatStore
from threadline.service.lifecycle import RunKeeper
from threadline.service.streams import RunStreams
from threadline.services import Services

AuthRequest = Request[Principal, Token, Any]
LastEventId = Annotated[str | None, HeaderParameter(name="Last-Event-ID")]
Authorization = Annotated[str | None, HeaderParameter(name="Authorization")]


async def run_response(store: ChatStore, user_id: str, run_id: UUID) -> RunResponse:
    run = await store.run(user_id, run_id)
    snapshot = await store.snapshot(run_id) if run else None
    if run is None or snapshot is None:
        raise NotFound("Run not found.")
    return RunResponse(
        id=run.id,
        thread_id=run.thread_id,
        status=snapshot.status,
        model=run.model,
        provider=run.provider,
        user_message_id=run.user_message_id,
        assistant_message_id=run.assistant_message_id,
        content=snapshot.content,
        error=snapshot.error,
        created_at=run.created_at,
        first_token_at=run.first_token_at,
        finished_at=run.finished_at,
        stream_url=stream_path(run.id),
        usage=UsagePayload.of(snapshot.usage) if snapshot.usage else None,
        sources=snapshot.sources,
    )


class RunController(Controller):
    path = "/runs"
    tags = ["runs"]

    @get("/{run_id:uuid}", summary="A run's status, partial or final text, and timings")
    async def read(
        self, request: AuthRequest, run_id: FromPath[UUID], chat_store: NamedDependency[ChatStore]
    ) -> RunResponse:
        return await run_response(chat_store, request.user.user_id, run_id)

    @post(
        "/{run_id:uuid}/cancel",
        status_code=200,
        summary="Stop a run from any process; keeps its partial text",
    )
    async def cancel(
        self,
        request: AuthRequest,
        run_id: FromPath[UUID],
        chat_store: NamedDependency[ChatStore],
        keeper: NamedDependency[RunKeeper],
    ) -> RunResponse:
        await keeper.cancel(request.user.user_id, run_id)
        return await run_response(chat_store, request.user.user_id, run_id)

    @get(
        "/{run_id:uuid}/stream",
        summary="Replay a run's events after Last-Event-ID, then follow it live",
        description="Authenticate with `Authorization: Bearer` or, for `EventSource`, the run-scoped "
        "`token` from the `start` event's `stream_url`.",
    )
    async def stream(
        self,
        run_id: FromPath[UUID],
        services: NamedDependency[Services],
        authorization: FromHeader[Authorization] = None,
        token: FromQuery[str | None] = None,
        last_event_id_header: FromHeader[LastEventId] = None,
        last_event_id: FromQuery[str | None] = None,
    ) -> Stream:
        secret = services.settings.auth.jwt_secret.reveal()
        user_id = stream_reader(secret, run_id, authorization=authorization, token=token)
        after = parse_last_event_id(last_event_id_header, last_event_id)
        if await services.store.run(user_id, run_id) is None:
            raise NotFound("Run not found.")
        streams: RunStreams = services.streams
        return sse_response(
            streams.follow(run_id, after), run_id=run_id, retry_ms=services.settings.stream.retry_ms
        )
