"""Refusals of admission: which limit, and when retrying can succeed; budget periods; reservations."""

from __future__ import annotations

from datetime import UTC, datetime

from threadline.adapters.estimated_tokens import EstimatedTokens
from threadline.domain.errors import BudgetExceeded, TooManyRuns
from threadline.domain.models import Agent
from threadline.domain.usage import Admission, next_midnight, next_month
from threadline.service.admission import BUSY_RETRY_S, DATE_LINE_TOKENS, AdmissionControl, refusal
from threadline.service.context import PER_MESSAGE_OVERHEAD
from threadline.settings import Settings

NOW = datetime(2026, 11, 23, 22, 30, tzinfo=UTC)


def verdict(**changes: object) -> Admission:
    fields: dict[str, object] = {
        "admitted": False,
        "refused": "daily",
        "reserved_tokens": 100,
        "live_runs": 0,
        "held_tokens": 0,
        "used_today": 950,
        "used_this_month": 950,
        "daily_budget": 1_000,
        "monthly_budget": None,
    }
    return Admission(**{**fields, **changes})  # type: ignore[arg-type]


def test_periods_end_at_midnight_utc_and_on_the_first_of_the_month() -> None:
    assert next_midnight(NOW) == datetime(2026, 11, 24, tzinfo=UTC)
    assert next_month(NOW) == datetime(2026, 12, 1, tzinfo=UTC)
    assert next_month(datetime(2026, 12, 31, 23, 59, tzinfo=UTC)) == datetime(2027, 1, 1, tzinfo=UTC)


def test_a_spent_daily_budget_says_to_retry_at_midnight() -> None:
    error = refusal(verdict(), NOW, max_live_runs=5)
    assert isinstance(error, BudgetExceeded)
    assert error.code == "token_budget_exceeded"
    assert error.retry_after_s == 90 * 60
    assert "daily token budget is 1000 and 950 are used" in error.message


def test_a_budget_held_by_runs_in_progress_says_to_retry_soon() -> None:
    # 900 + 100 fits the budget; it is the 50 held by a live run that does not.
    error = refusal(verdict(used_today=900, held_tokens=50), NOW, max_live_runs=5)
    assert error.retry_after_s == BUSY_RETRY_S
    assert "in progress" in error.message


def test_a_spent_monthly_budget_says_to_retry_next_month() -> None:
    error = refusal(
        verdict(refused="monthly", used_today=0, used_this_month=10_000, monthly_budget=10_000),
        NOW,
        max_live_runs=5,
    )
    assert error.retry_after_s == int((datetime(2026, 12, 1, tzinfo=UTC) - NOW).total_seconds())
    assert "monthly" in error.message


def test_too_many_live_runs_says_to_retry_when_one_ends() -> None:
    error = refusal(verdict(refused="streams", live_runs=5), NOW, max_live_runs=5)
    assert isinstance(error, TooManyRuns)
    assert error.code == "too_many_streams"
    assert error.retry_after_s == BUSY_RETRY_S


def test_a_reservation_covers_system_prompt_question_and_the_longest_reply() -> None:
    counter = EstimatedTokens()
    settings = Settings.from_env({"THREADLINE_MAX_OUTPUT_TOKENS": "300"})
    control = AdmissionControl(admissions=None, counter=counter, settings=settings)  # type: ignore[arg-type]
    agent = Agent(slug="a", name="A", system_prompt="Be brief.")
    question = "What is the capital of France?"
    expected = (
        counter.count(agent.system_prompt)
        + DATE_LINE_TOKENS
        + counter.count(question)
        + 2 * PER_MESSAGE_OVERHEAD
    )
    assert control.fixed_tokens(agent, question) == expected + 300
    capped = Agent(slug="a", name="A", system_prompt="Be brief.", max_output_tokens=50)
    assert control.fixed_tokens(capped, question) == expected + 50
