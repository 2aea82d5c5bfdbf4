"""`/threads`: create, list and filter, find the active one, read, change and delete a thread."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

import msgspec
from litestar import Controller, Request, delete, get, patch, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter
from litestar.security.jwt import Token

from threadline.db.threads import ThreadChange, ThreadFilter
from threadline.domain.errors import InvalidInput, NotFound
from threadline.domain.models import ThreadStatus
from threadline.http.auth import Principal
from threadline.http.client_info import recorded_client
from threadline.http.session_dependencies import SESSION_DEPENDENCIES
from threadline.http.session_schemas import (
    CreateThread,
    MessageOut,
    Pagination,
    ThreadDetailOut,
    ThreadOut,
    ThreadPage,
    ThreadUsageOut,
    UpdateThread,
)
from threadline.sessions import Sessions

AuthRequest = Request[Principal, Token, Any]
Page = Annotated[int, QueryParameter(ge=1, le=1_000_000, description="1-based page number")]
PerPage = Annotated[int, QueryParameter(ge=1, le=50, description="threads per page, at most 50")]
Search = Annotated[
    str | None,
    # Named apart from the `search` dependency (the memory search service) the app provides.
    QueryParameter(name="search", min_length=1, max_length=200, description="text in the title or a message"),
]
AgentFilter = Annotated[str | None, QueryParameter(max_length=64)]
MinMessages = Annotated[int, QueryParameter(ge=0, le=1_000_000_000)]
CreatedFrom = Annotated[datetime | None, QueryParameter(description="created at or after (inclusive)")]
CreatedTo = Annotated[datetime | None, QueryParameter(description="created before (exclusive)")]


def no_nul(**values: str | None) -> None:
    """Postgres text cannot hold NUL: refuse it as bad input instead of failing in the database."""
    for name, value in values.items():
        if value is not None and "\x00" in value:
            raise InvalidInput(f"`{name}` must not contain NUL characters.")


def checked_metadata(metadata: dict[str, Any], *, limit: int) -> dict[str, Any]:
    encoded = msgspec.json.encode(metadata)
    if len(encoded) > limit:
        raise InvalidInput(f"`metadata` is larger than {limit} bytes.")
    if b"\\u0000" in encoded:
        raise InvalidInput("`metadata` must not contain NUL characters.")
    return metadata


def checked_title(title: str | None) -> str | None:
    if title is None:
        return None
    no_nul(title=title)
    cleaned = " ".join(title.split())
    if not cleaned:
        raise InvalidInput("`title` must not be blank; send null to clear it.")
    return cleaned


def metadata_limit(request: AuthRequest) -> int:
    limit: int = request.app.state.services.settings.limits.max_metadata_bytes
    return limit


async def thread_page(sessions: Sessions, where: ThreadFilter, page: int, per_page: int) -> ThreadPage:
    no_nul(agent=where.agent, search=where.search)
    threads, total = await sessions.threads.page(where, page=page, per_page=per_page)
    return ThreadPage(
        threads=[ThreadOut.of(thread) for thread in threads],
        pagination=Pagination.of(page, per_page, total),
    )


class ThreadController(Controller):
    path = "/threads"
    tags = ["threads"]
    dependencies = SESSION_DEPENDENCIES

    @post("/", status_code=201, summary="Start a thread (optionally with a title, an agent, metadata)")
    async def create(
        self, request: AuthRequest, data: JSONBody[CreateThread], sessions: NamedDependency[Sessions]
    ) -> ThreadOut:
        metadata = checked_metadata(data.metadata, limit=metadata_limit(request))
        if "client" in metadata:
            raise InvalidInput("`metadata.client` is recorded by the server and cannot be set.")
        if client := recorded_client(request):
            metadata = {**metadata, "client": client}
        thread = await sessions.threads.create(
            request.user.user_id, agent=data.agent, title=checked_title(data.title), metadata=metadata
        )
        return ThreadOut.of(thread)

    @get("/", summary="The caller's threads, newest activity first, filtered and paged")
    async def list_threads(
        self,
        request: AuthRequest,
        sessions: NamedDependency[Sessions],
        page: FromQuery[Page] = 1,
        per_page: FromQuery[PerPage] = 20,
        status: FromQuery[ThreadStatus | None] = None,
        agent: FromQuery[AgentFilter] = None,
        search_text: FromQuery[Search] = None,
        min_messages: FromQuery[MinMessages] = 0,
        created_from: FromQuery[CreatedFrom] = None,
        created_to: FromQuery[CreatedTo] = None,
    ) -> ThreadPage:
        where = ThreadFilter(
            user_id=request.user.user_id, status=status, agent=agent, search=search_text,
            min_messages=min_messages, created_from=created_from, created_before=created_to,
        )  # fmt: skip
        return await thread_page(sessions, where, page, per_page)

    @get("/active", summary="The caller's most recently active `active` thread (404 when none)")
    async def active(self, request: AuthRequest, sessions: NamedDependency[Sessions]) -> ThreadOut:
        thread = await sessions.threads.latest_active(request.user.user_id)
        if thread is None:
            raise NotFound("You have no active thread.")
        return ThreadOut.of(thread)

    @get("/{thread_id:uuid}", summary="A thread with its last message and usage totals")
    async def read(
        self, request: AuthRequest, thread_id: FromPath[UUID], sessions: NamedDependency[Sessions]
    ) -> ThreadDetailOut:
        found = await sessions.threads.detail(request.user.user_id, thread_id)
        thread = found.thread
        return ThreadDetailOut(
            **msgspec.structs.asdict(ThreadOut.of(thread)),
            context_summary=thread.context_summary,
            total_messages=thread.message_count,
            last_activity=thread.last_activity_at,
            last_message=MessageOut.of(found.last_message) if found.last_message else None,
            usage=msgspec.convert(msgspec.structs.asdict(found.usage), ThreadUsageOut),
        )

    @patch("/{thread_id:uuid}", summary="Change a thread's title, status (see the lifecycle) or metadata")
    async def change(
        self,
        request: AuthRequest,
        thread_id: FromPath[UUID],
        data: JSONBody[UpdateThread],
        sessions: NamedDependency[Sessions],
    ) -> ThreadOut:
        set_title = not isinstance(data.title, msgspec.UnsetType)
        patch_metadata = None
        if not isinstance(data.metadata, msgspec.UnsetType):
            patch_metadata = checked_metadata(data.metadata, limit=metadata_limit(request))
        change = ThreadChange(
            set_title=set_title,
            title=checked_title(data.title) if not isinstance(data.title, msgspec.UnsetType) else None,
            status=None if isinstance(data.status, msgspec.UnsetType) else data.status,
            metadata_patch=patch_metadata,
            # The recorded client counts too: allow for it on top of what a client may send.
            max_metadata_bytes=metadata_limit(request) + 2_048,
        )
        return ThreadOut.of(await sessions.threads.change(request.user.user_id, thread_id, change))

    @delete("/{thread_id:uuid}", status_code=204, summary="Delete a thread: messages, runs, embeddings")
    async def remove(
        self, request: AuthRequest, thread_id: FromPath[UUID], sessions: NamedDependency[Sessions]
    ) -> None:
        await sessions.threads.delete(request.user.user_id, thread_id)
