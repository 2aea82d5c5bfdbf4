"""Settings come from the environment only, fail with the setting's name, and never show secrets."""

from __future__ import annotations

from pathlib import Path

import pytest

from threadline.settings import ECHO_MODEL, Settings, SettingsError, ensure_jwt_secret


def test_defaults_use_the_echo_model_and_embedded_services() -> None:
    settings = Settings.from_env({})
    assert settings.model.default_model == ECHO_MODEL
    assert settings.database.url is None
    assert settings.redis.url is None
    assert (settings.server.host, settings.server.port) == ("127.0.0.1", 8000)
    assert settings.limits.max_message_chars == 32_000
    assert settings.stream.heartbeat_s == 15.0


def test_an_openai_endpoint_changes_the_default_model() -> None:
    settings = Settings.from_env({"OPENAI_BASE_URL": "http://localhost:11434/v1"})
    assert settings.model.default_model == "gpt-4o-mini"
    assert (
        Settings.from_env({"OPENAI_API_KEY": "k", "THREADLINE_MODEL": "llama3"}).model.default_model
        == "llama3"
    )


def test_secrets_are_masked_in_repr() -> None:
    settings = Settings.from_env(
        {"OPENAI_API_KEY": "sk-very-secret", "THREADLINE_JWT_SECRET": "jwt-very-secret"}
    )
    text = repr(settings)
    assert "sk-very-secret" not in text
    assert "jwt-very-secret" not in text
    assert settings.model.api_key.reveal() == "sk-very-secret"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PORT", "eighty"),
        ("THREADLINE_WORKERS", "0"),
        ("THREADLINE_HEARTBEAT_S", "-1"),
        ("THREADLINE_INCLUDE_USAGE", "maybe"),
    ],
)
def test_bad_values_name_the_setting(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value})


def test_a_local_jwt_secret_is_generated_once(tmp_path: Path) -> None:
    settings = Settings.from_env({"THREADLINE_DATA_DIR": str(tmp_path)})
    first = ensure_jwt_secret(settings).auth.jwt_secret.reveal()
    second = ensure_jwt_secret(settings).auth.jwt_secret.reveal()
    assert len(first) >= 32
    assert first == second
    assert (tmp_path / "jwt_secret").stat().st_mode & 0o077 == 0
