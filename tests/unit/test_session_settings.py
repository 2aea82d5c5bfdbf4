"""The session settings: defaults, parsing, and refusals that name the variable."""

from __future__ import annotations

import pytest

from threadline.settings import Settings, SettingsError


def test_defaults() -> None:
    settings = Settings.from_env({})
    assert settings.sessions.idle_abandon_minutes == 30
    assert settings.sessions.metadata_retention_days == 30
    assert settings.sessions.trusted_proxies == ()
    assert settings.sessions.title_model is None
    assert settings.jobs.worker_in_app is True


def test_values_are_read() -> None:
    settings = Settings.from_env(
        {
            "THREADLINE_IDLE_ABANDON_MINUTES": "5",
            "THREADLINE_METADATA_RETENTION_DAYS": "7",
            "THREADLINE_TRUSTED_PROXIES": " 10.0.0.0/8, 192.168.1.5 ,fd00::/8 ",
            "THREADLINE_TITLE_MODEL": "agent",
            "THREADLINE_JOB_WORKER": "false",
        }
    )
    assert settings.sessions.idle_abandon_minutes == 5
    assert settings.sessions.metadata_retention_days == 7
    assert settings.sessions.trusted_proxies == ("10.0.0.0/8", "192.168.1.5", "fd00::/8")
    assert settings.sessions.title_model == "agent"
    assert settings.jobs.worker_in_app is False


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("THREADLINE_TRUSTED_PROXIES", "10.0.0.0/8,not-an-ip"),
        ("THREADLINE_IDLE_ABANDON_MINUTES", "0"),
        ("THREADLINE_METADATA_RETENTION_DAYS", "soon"),
        ("THREADLINE_JOB_WORKER", "maybe"),
    ],
)
def test_bad_values_name_the_setting(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value})
