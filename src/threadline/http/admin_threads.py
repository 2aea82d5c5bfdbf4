"""Admin views of threads: any user's threads, and abandoning idle threads on demand."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from threadline.db.threads import ThreadFilter
from threadline.domain.models import ThreadStatus
from threadline.http.auth import admin_only
from threadline.http.session_dependencies import SESSION_DEPENDENCIES
from threadline.http.session_schemas import CleanupRequest, CleanupResponse, ThreadPage
from threadline.http.threads import (
    AgentFilter,
    CreatedFrom,
    CreatedTo,
    MinMessages,
    Page,
    PerPage,
    Search,
    no_nul,
    thread_page,
)
from threadline.sessions import Sessions

UserId = Annotated[str, QueryParameter(min_length=1, max_length=128)]


class AdminThreadController(Controller):
    path = "/admin"
    tags = ["admin"]
    guards = [admin_only]
    dependencies = SESSION_DEPENDENCIES

    @get("/users/{user_id:str}/threads", summary="Any user's threads, with the filters of GET /threads")
    async def user_threads(
        self,
        user_id: FromPath[str],
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
        no_nul(user_id=user_id)
        where = ThreadFilter(
            user_id=user_id, status=status, agent=agent, search=search_text, min_messages=min_messages,
            created_from=created_from, created_before=created_to,
        )  # fmt: skip
        return await thread_page(sessions, where, page, per_page)

    @post(
        "/threads/cleanup",
        status_code=200,
        summary="Mark active threads idle longer than max_idle_minutes (default: the setting) abandoned",
    )
    async def cleanup(
        self, sessions: NamedDependency[Sessions], data: JSONBody[CleanupRequest | None] = None
    ) -> CleanupResponse:
        minutes = data.max_idle_minutes if data is not None else None
        if minutes is None:
            minutes = sessions.idle_abandon_minutes
        abandoned = await sessions.housekeeping.abandon_idle(minutes)
        return CleanupResponse(max_idle_minutes=minutes, abandoned=len(abandoned), thread_ids=abandoned)
