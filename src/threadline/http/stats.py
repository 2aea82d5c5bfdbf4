"""`GET /stats` for the caller and `GET /admin/stats` for operators: threads, runs, timings, tokens."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec
from litestar import Request, get
from litestar.di import NamedDependency
from litestar.params import FromQuery, QueryParameter
from litestar.security.jwt import Token

from threadline.db.stats import Stats, StatsFilter
from threadline.domain.errors import InvalidInput
from threadline.http.auth import Principal, admin_only
from threadline.http.session_dependencies import SESSION_DEPENDENCIES
from threadline.sessions import Sessions

AuthRequest = Request[Principal, Token, Any]
From = Annotated[datetime | None, QueryParameter(name="from", description="from (inclusive)")]
To = Annotated[datetime | None, QueryParameter(name="to", description="to (exclusive)")]
UserFilter = Annotated[str | None, QueryParameter(min_length=1, max_length=128)]
AgentFilter = Annotated[str | None, QueryParameter(min_length=1, max_length=64)]


class StatsScope(msgspec.Struct, frozen=True, kw_only=True):
    user_id: str | None
    agent: str | None
    from_: datetime | None = msgspec.field(name="from")
    to: datetime | None


class StatsResponse(Stats, frozen=True, kw_only=True):
    scope: StatsScope


async def stats_for(sessions: Sessions, scope: StatsScope) -> StatsResponse:
    for name, value in (("user_id", scope.user_id), ("agent", scope.agent)):
        if value is not None and "\x00" in value:
            raise InvalidInput(f"`{name}` must not contain NUL characters.")
    if scope.from_ and scope.to and scope.from_ >= scope.to:
        raise InvalidInput("`from` must be before `to`.")
    found = await sessions.stats.stats(
        StatsFilter(
            user_id=scope.user_id, agent=scope.agent, created_from=scope.from_, created_before=scope.to
        )
    )
    return StatsResponse(scope=scope, **msgspec.structs.asdict(found))


@get("/stats", tags=["stats"], dependencies=SESSION_DEPENDENCIES, summary="The caller's own statistics")
async def my_stats(
    request: AuthRequest,
    sessions: NamedDependency[Sessions],
    agent: FromQuery[AgentFilter] = None,
    from_: FromQuery[From] = None,
    to: FromQuery[To] = None,
) -> StatsResponse:
    scope = StatsScope(user_id=request.user.user_id, agent=agent, from_=from_, to=to)
    return await stats_for(sessions, scope)


@get(
    "/admin/stats",
    tags=["admin"],
    guards=[admin_only],
    dependencies=SESSION_DEPENDENCIES,
    summary="Statistics across users, filtered by user, agent and time range",
)
async def admin_stats(
    sessions: NamedDependency[Sessions],
    user_id: FromQuery[UserFilter] = None,
    agent: FromQuery[AgentFilter] = None,
    from_: FromQuery[From] = None,
    to: FromQuery[To] = None,
) -> StatsResponse:
    return await stats_for(sessions, StatsScope(user_id=user_id, agent=agent, from_=from_, to=to))
