"""Wire Structs of the usage and budget routes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec

from threadline.domain.usage import BudgetStatus, GroupBy, UsageGroup, UsageTotals

TokenBudget = Annotated[int, msgspec.Meta(ge=0, le=10**15)]


class UsageResponse(msgspec.Struct, frozen=True, kw_only=True):
    user_id: str | None
    """The caller, or the one user an admin asked about; None for everyone."""
    start: datetime
    end: datetime
    group_by: GroupBy
    groups: list[UsageGroup]
    totals: UsageTotals
    budget: BudgetStatus | None = None


class LimitsRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A user's own budgets; null (or absent) falls back to THREADLINE_*_TOKEN_BUDGET."""

    daily_token_budget: TokenBudget | None = None
    monthly_token_budget: TokenBudget | None = None


class LimitsResponse(msgspec.Struct, frozen=True, kw_only=True):
    user_id: str
    daily_token_budget: int | None
    monthly_token_budget: int | None
    budget: BudgetStatus
