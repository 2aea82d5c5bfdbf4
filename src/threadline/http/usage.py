"""`/usage` (the caller's tokens, cost and budgets) and `/admin/usage` (everyone's; admins only)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from litestar import Controller, Request, get, put
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter
from litestar.security.jwt import Token

from threadline.domain.errors import InvalidInput
from threadline.domain.usage import GroupBy, UsageQuery
from threadline.http.auth import Principal, admin_only
from threadline.http.usage_schemas import LimitsRequest, LimitsResponse, UsageResponse
from threadline.ports import UsageReports
from threadline.service.admission import AdmissionControl

AuthRequest = Request[Principal, Token, Any]
DEFAULT_RANGE = timedelta(days=30)
MAX_RANGE = timedelta(days=366)
From = Annotated[
    datetime | None,
    QueryParameter(
        name="from", description="Start, inclusive (ISO 8601; UTC without an offset). Default: 30 days ago."
    ),
]
To = Annotated[datetime | None, QueryParameter(description="End, exclusive (ISO 8601). Default: now.")]
CallerGrouping = Literal["day", "model", "thread"]
AdminGrouping = Literal["day", "model", "thread", "agent", "user"]
UserId = Annotated[str, QueryParameter(min_length=1, max_length=128)]


def time_range(start: datetime | None, end: datetime | None) -> tuple[datetime, datetime]:
    """`[start, end)` in UTC: naive times are UTC; the default is the last 30 days."""
    end = _utc(end) if end else datetime.now(UTC)
    start = _utc(start) if start else end - DEFAULT_RANGE
    if start >= end:
        raise InvalidInput("`from` must be before `to`.")
    if end - start > MAX_RANGE:
        raise InvalidInput(f"A usage report spans at most {MAX_RANGE.days} days.")
    return start, end


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


class UsageController(Controller):
    path = "/usage"
    tags = ["usage"]

    @get(
        "/",
        summary="The caller's tokens and cost over a time range, grouped by day, model or thread",
        description="Every run counts, whatever its outcome; `budget` shows the daily and monthly "
        "token budgets, what is used and what runs in progress hold.",
    )
    async def read(
        self,
        request: AuthRequest,
        usage_reports: NamedDependency[UsageReports],
        admission: NamedDependency[AdmissionControl],
        start: FromQuery[From] = None,
        to: FromQuery[To] = None,
        group_by: FromQuery[CallerGrouping] = "day",
    ) -> UsageResponse:
        begin, end = time_range(start, to)
        user_id = request.user.user_id
        report = await usage_reports.report(
            UsageQuery(start=begin, end=end, group_by=GroupBy(group_by), user_id=user_id)
        )
        return UsageResponse(
            user_id=user_id,
            start=report.start,
            end=report.end,
            group_by=report.group_by,
            groups=report.groups,
            totals=report.totals,
            budget=await admission.budget(user_id),
        )


class AdminUsageController(Controller):
    path = "/admin"
    tags = ["admin"]
    guards = [admin_only]

    @get("/usage", summary="Everyone's tokens and cost, grouped by day, model, thread, agent or user")
    async def usage(
        self,
        usage_reports: NamedDependency[UsageReports],
        start: FromQuery[From] = None,
        to: FromQuery[To] = None,
        group_by: FromQuery[AdminGrouping] = "day",
        user_id: FromQuery[UserId | None] = None,
    ) -> UsageResponse:
        begin, end = time_range(start, to)
        report = await usage_reports.report(
            UsageQuery(start=begin, end=end, group_by=GroupBy(group_by), user_id=user_id)
        )
        return UsageResponse(
            user_id=user_id,
            start=report.start,
            end=report.end,
            group_by=report.group_by,
            groups=report.groups,
            totals=report.totals,
        )

    @get("/users/{user_id:str}/limits", summary="A user's token budgets and where they stand")
    async def read_limits(
        self, user_id: FromPath[str], admission: NamedDependency[AdmissionControl]
    ) -> LimitsResponse:
        return await _limits(admission, user_id)

    @put("/users/{user_id:str}/limits", summary="Set a user's own token budgets (null: the default)")
    async def write_limits(
        self,
        user_id: FromPath[str],
        data: JSONBody[LimitsRequest],
        admission: NamedDependency[AdmissionControl],
    ) -> LimitsResponse:
        if not 1 <= len(user_id) <= 128 or not user_id.isprintable():
            raise InvalidInput("A user id is 1 to 128 printable characters.")
        await admission.set_overrides(user_id, data.daily_token_budget, data.monthly_token_budget)
        return await _limits(admission, user_id)


async def _limits(admission: AdmissionControl, user_id: str) -> LimitsResponse:
    daily, monthly = await admission.overrides(user_id)
    return LimitsResponse(
        user_id=user_id,
        daily_token_budget=daily,
        monthly_token_budget=monthly,
        budget=await admission.budget(user_id),
    )
