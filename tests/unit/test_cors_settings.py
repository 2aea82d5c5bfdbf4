"""The CORS settings: off by default, exact origins as browsers send them, and clear refusals."""

from __future__ import annotations

import pytest

from threadline.http.cors import cors_config
from threadline.settings import Settings, SettingsError


def test_off_by_default() -> None:
    settings = Settings.from_env({})
    assert settings.cors.origins == ()
    assert settings.cors.allow_credentials is False
    assert cors_config(settings.cors) is None


def test_origins_are_read_as_browsers_send_them() -> None:
    settings = Settings.from_env(
        {
            "THREADLINE_CORS_ORIGINS": " https://App.Example.com, http://localhost:5173,,"
            "https://app.example.com,http://[::1]:8080,capacitor://localhost ",
            "THREADLINE_CORS_ALLOW_CREDENTIALS": "true",
        }
    )
    assert settings.cors.origins == (
        "https://app.example.com",
        "http://localhost:5173",
        "http://[::1]:8080",
        "capacitor://localhost",
    )
    assert settings.cors.allow_credentials is True
    config = cors_config(settings.cors)
    assert config is not None
    assert config.is_origin_allowed("https://app.example.com")
    assert not config.is_origin_allowed("https://app.example.com.evil.example")
    assert not config.is_origin_allowed("https://appXexample.com")


def test_a_star_alone_allows_any_origin_without_credentials() -> None:
    settings = Settings.from_env({"THREADLINE_CORS_ORIGINS": "*"})
    assert settings.cors.origins == ("*",)
    config = cors_config(settings.cors)
    assert config is not None
    assert config.is_allow_all_origins
    assert not config.allow_credentials


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"THREADLINE_CORS_ORIGINS": "*", "THREADLINE_CORS_ALLOW_CREDENTIALS": "true"}, "exact origins"),
        ({"THREADLINE_CORS_ORIGINS": "https://a.example,*"}, "only entry"),
        ({"THREADLINE_CORS_ORIGINS": "https://*.example.com"}, "no wildcard"),
        ({"THREADLINE_CORS_ORIGINS": "https://app.example.com/"}, "no trailing slash"),
        ({"THREADLINE_CORS_ORIGINS": "https://app.example.com/chat"}, "no path"),
        ({"THREADLINE_CORS_ORIGINS": "app.example.com"}, "scheme://host"),
        ({"THREADLINE_CORS_ORIGINS": "https://user@app.example.com"}, "scheme://host"),
        ({"THREADLINE_CORS_ORIGINS": "https://app.example.com?x=1"}, "scheme://host"),
        ({"THREADLINE_CORS_ORIGINS": "https://app.example.com:99999"}, "no valid port"),
        ({"THREADLINE_CORS_ORIGINS": "https://app.example.com:443"}, "without the default port"),
        ({"THREADLINE_CORS_ORIGINS": "null"}, "must not list `null`"),
        ({"THREADLINE_CORS_ALLOW_CREDENTIALS": "sometimes"}, "true or false"),
    ],
)
def test_bad_values_are_refused_at_startup_naming_the_setting(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match="THREADLINE_CORS_") as refused:
        Settings.from_env(env)
    assert message in str(refused.value)
