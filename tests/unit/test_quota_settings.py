"""The accounting settings: rates, caps, budgets and the price table, read and checked in settings.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from threadline.settings import Settings, SettingsError


def test_defaults_allow_60_chat_requests_a_minute_5_live_runs_and_no_budget() -> None:
    quotas = Settings.from_env({}).quotas
    assert quotas.rate_limit == "60/minute"
    assert quotas.auth_failure_limit == "20/minute"
    assert quotas.max_streams_per_user == 5
    assert (quotas.daily_token_budget, quotas.monthly_token_budget) == (None, None)
    assert quotas.price_table is None
    assert Settings.from_env({}).model.max_output_tokens == 4_096


def test_every_accounting_setting_is_read() -> None:
    settings = Settings.from_env(
        {
            "THREADLINE_RATE_LIMIT": "10 per second",
            "THREADLINE_AUTH_FAILURE_LIMIT": "5/hour",
            "THREADLINE_MAX_STREAMS_PER_USER": "2",
            "THREADLINE_DAILY_TOKEN_BUDGET": "100000",
            "THREADLINE_MONTHLY_TOKEN_BUDGET": "0",
            "THREADLINE_PRICE_TABLE": "/etc/threadline/prices.toml",
            "THREADLINE_MAX_OUTPUT_TOKENS": "512",
        }
    )
    quotas = settings.quotas
    assert (quotas.rate_limit, quotas.auth_failure_limit) == ("10 per second", "5/hour")
    assert quotas.max_streams_per_user == 2
    assert (quotas.daily_token_budget, quotas.monthly_token_budget) == (100_000, 0)
    assert quotas.price_table == Path("/etc/threadline/prices.toml")
    assert settings.model.max_output_tokens == 512


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("THREADLINE_RATE_LIMIT", "sixty a minute"),
        ("THREADLINE_AUTH_FAILURE_LIMIT", "20/fortnight"),
        ("THREADLINE_MAX_STREAMS_PER_USER", "0"),
        ("THREADLINE_DAILY_TOKEN_BUDGET", "-1"),
        ("THREADLINE_MONTHLY_TOKEN_BUDGET", "lots"),
        ("THREADLINE_MAX_OUTPUT_TOKENS", "0"),
    ],
)
def test_unusable_values_fail_naming_the_setting(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value})
