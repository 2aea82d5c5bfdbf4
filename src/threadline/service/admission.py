"""Whether a run may start: a slot under the per-user cap on live runs, and tokens under the budgets.

A run reserves what it may spend (its prompt's estimate plus the most its reply may use) before the
model is called; ending the run swaps the reservation for the measured or counted usage, in the same
statement that writes the usage row (`finish_run.sql`). Refusals cost nothing: no message is saved
and no model is called.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from uuid import UUID

import anyio
import msgspec

from threadline.domain.errors import BudgetExceeded, RateLimited, TooManyRuns
from threadline.domain.models import Agent
from threadline.domain.usage import Admission, AdmissionRequest, BudgetStatus, next_midnight, next_month
from threadline.ports import Admissions, TokenCounter
from threadline.service.context import PER_MESSAGE_OVERHEAD
from threadline.settings import Settings

log = logging.getLogger("threadline.admission")
# The prompt's "Current date and time: …" line, counted generously.
DATE_LINE_TOKENS = 24
# A refusal caused by runs still in progress clears as soon as one of them ends.
BUSY_RETRY_S = 2


class Ticket:
    """An admission held while its turn commits: given back unless `keep()` says a run now owns it.

    `output_cap` is set when a budget applies: the run's reply may then use no more than its
    reservation counted on, so the model is asked for at most that (`bound`).
    """

    def __init__(self, run_id: UUID, *, output_cap: int | None = None) -> None:
        self.run_id = run_id
        self.output_cap = output_cap
        self._kept = False

    def bound(self, agent: Agent) -> Agent:
        """The agent the run uses: with `max_output_tokens` at the cap when a budget applies."""
        if self.output_cap is None or agent.max_output_tokens == self.output_cap:
            return agent
        return msgspec.structs.replace(agent, max_output_tokens=self.output_cap)

    def keep(self, kept: bool = True) -> None:
        self._kept = kept

    @property
    def kept(self) -> bool:
        return self._kept


def max_output_tokens(agent: Agent, settings: Settings) -> int:
    return agent.max_output_tokens or settings.model.max_output_tokens


class AdmissionControl:
    def __init__(self, *, admissions: Admissions, counter: TokenCounter, settings: Settings) -> None:
        self._admissions = admissions
        self._counter = counter
        self._settings = settings

    def fixed_tokens(self, agent: Agent, question: str) -> int:
        """What every prompt of this agent and question costs, plus the most the reply may use."""
        system = self._counter.count(agent.system_prompt) + DATE_LINE_TOKENS + PER_MESSAGE_OVERHEAD
        asked = self._counter.count(question) + PER_MESSAGE_OVERHEAD
        return system + asked + max_output_tokens(agent, self._settings)

    @asynccontextmanager
    async def admit(
        self, user_id: str, *, thread_id: UUID | None, agent: Agent, question: str
    ) -> AsyncIterator[Ticket]:
        """Admit a run or raise a 429 error; the ticket's run id is the run's id if it is kept."""
        quotas = self._settings.quotas
        request = AdmissionRequest(
            user_id=user_id,
            run_id=uuid.uuid4(),
            thread_id=thread_id,
            max_live_runs=quotas.max_streams_per_user,
            daily_budget=quotas.daily_token_budget,
            monthly_budget=quotas.monthly_token_budget,
            fixed_tokens=self.fixed_tokens(agent, question),
            context_cap=self._settings.model.context_tokens,
        )
        verdict = await self._admissions.admit(request)
        if not verdict.admitted:
            raise refusal(verdict, datetime.now(UTC), max_live_runs=quotas.max_streams_per_user)
        budgeted = verdict.daily_budget is not None or verdict.monthly_budget is not None
        cap = max_output_tokens(agent, self._settings) if budgeted else None
        ticket = Ticket(request.run_id, output_cap=cap)
        try:
            yield ticket
        finally:
            if not ticket.kept:
                await self._release(request.run_id)

    async def _release(self, run_id: UUID) -> None:
        with anyio.CancelScope(shield=True):
            try:
                await self._admissions.release(run_id)
            except Exception:
                # Harmless: the next admission of this user forgets it once it is a minute old.
                log.warning("could not release the admission of run %s", run_id, exc_info=True)

    async def budget(self, user_id: str) -> BudgetStatus:
        quotas = self._settings.quotas
        return await self._admissions.budget(user_id, quotas.daily_token_budget, quotas.monthly_token_budget)

    async def overrides(self, user_id: str) -> tuple[int | None, int | None]:
        return await self._admissions.overrides(user_id)

    async def set_overrides(self, user_id: str, daily: int | None, monthly: int | None) -> None:
        await self._admissions.set_overrides(user_id, daily, monthly)


def refusal(verdict: Admission, now: datetime, *, max_live_runs: int) -> RateLimited:
    """The 429 error for a refused admission, with when trying again can succeed."""
    if verdict.refused == "streams":
        return TooManyRuns(
            f"{verdict.live_runs} of your replies are still being generated; at most {max_live_runs} "
            "may run at once. Retry when one has finished.",
            retry_after_s=BUSY_RETRY_S,
        )
    daily = verdict.refused == "daily"
    budget = (verdict.daily_budget if daily else verdict.monthly_budget) or 0
    used = verdict.used_today if daily else verdict.used_this_month
    period = "daily" if daily else "monthly"
    if used + verdict.reserved_tokens > budget:
        resets = next_midnight(now) if daily else next_month(now)
        retry_after_s = max(1, math.ceil((resets - now).total_seconds()))
        when = f"it resets at {resets.isoformat()}"
    else:
        retry_after_s = BUSY_RETRY_S
        when = "replies still in progress hold the rest until they finish"
    return BudgetExceeded(
        f"This request may use up to {verdict.reserved_tokens} tokens; your {period} token budget is "
        f"{budget} and {used} are used ({when}).",
        retry_after_s=retry_after_s,
    )
