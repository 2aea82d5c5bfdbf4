"""Accounting as the layers pass it around: admissions, budgets, quotas and usage reports."""

from __future__ import annotations

import enum
from datetime import UTC, datetime, timedelta
from typing import Literal
from uuid import UUID

import msgspec

Refusal = Literal["streams", "daily", "monthly"]


class Quota(msgspec.Struct, frozen=True, kw_only=True):
    """Where a caller stands against one rate limit, as the RateLimit-* headers tell it."""

    limit: int
    remaining: int
    reset_s: int
    window_s: int


class AdmissionRequest(msgspec.Struct, frozen=True, kw_only=True):
    user_id: str
    run_id: UUID
    thread_id: UUID | None
    max_live_runs: int
    daily_budget: int | None
    monthly_budget: int | None
    fixed_tokens: int
    """The question, the system prompt and the most the reply may use."""
    context_cap: int
    """The most tokens of earlier conversation the prompt can carry."""


class Admission(msgspec.Struct, frozen=True, kw_only=True):
    """The verdict on one run: admitted with `reserved_tokens` held, or refused and why."""

    admitted: bool
    refused: Refusal | None
    reserved_tokens: int
    live_runs: int
    held_tokens: int
    used_today: int
    used_this_month: int
    daily_budget: int | None
    monthly_budget: int | None


class BudgetWindow(msgspec.Struct, frozen=True, kw_only=True):
    budget: int | None
    used: int
    reserved: int
    remaining: int | None
    resets_at: datetime


class BudgetStatus(msgspec.Struct, frozen=True, kw_only=True):
    daily: BudgetWindow
    monthly: BudgetWindow
    live_runs: int


class GroupBy(enum.StrEnum):
    DAY = "day"
    MODEL = "model"
    THREAD = "thread"
    AGENT = "agent"
    USER = "user"


class UsageTotals(msgspec.Struct, frozen=True, kw_only=True):
    runs: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    total_tokens: int = 0
    cost_usd: float = 0.0
    measured_runs: int = 0


class UsageGroup(UsageTotals, frozen=True, kw_only=True):
    key: str


class UsageQuery(msgspec.Struct, frozen=True, kw_only=True):
    start: datetime
    end: datetime
    group_by: GroupBy
    user_id: str | None
    """None: every user (admins only)."""


class UsageReport(msgspec.Struct, frozen=True, kw_only=True):
    start: datetime
    end: datetime
    group_by: GroupBy
    groups: list[UsageGroup]
    totals: UsageTotals


def next_midnight(now: datetime) -> datetime:
    """When a daily budget starts over: the next midnight UTC."""
    now = now.astimezone(UTC)
    return datetime(now.year, now.month, now.day, tzinfo=UTC) + timedelta(days=1)


def next_month(now: datetime) -> datetime:
    """When a monthly budget starts over: the first of the next month, midnight UTC."""
    now = now.astimezone(UTC)
    return datetime(now.year + now.month // 12, now.month % 12 + 1, 1, tzinfo=UTC)
