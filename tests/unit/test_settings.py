"""Settings parsing: defaults, validation and error messages naming the variable."""

from __future__ import annotations

import os

import pytest
from pydantic import ValidationError

from config.errors import ConfigurationError
from config.settings import Settings, load_settings, split_list


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Remove every PARLEY_ variable except the test suite's own PARLEY_TEST_ ones."""
    for name in list(os.environ):
        upper = name.upper()
        if upper.startswith("PARLEY_") and not upper.startswith("PARLEY_TEST_"):
            monkeypatch.delenv(name)


def load_error(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> str:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError) as excinfo:
        load_settings()
    return str(excinfo.value)


def test_defaults_run_embedded() -> None:
    """With no PARLEY_ variables: SQLite database, no Redis, console SMS."""
    settings = load_settings()
    assert isinstance(settings, Settings)
    assert settings.database.url.startswith("sqlite://")
    assert settings.database.is_sqlite
    assert settings.database.should_auto_migrate
    assert settings.redis.url is None
    assert settings.sms.provider == "console"


def test_postgres_url_parses(monkeypatch: pytest.MonkeyPatch) -> None:
    """PARLEY_DATABASE_URL=postgres://... is taken as is and is not SQLite."""
    monkeypatch.setenv("PARLEY_DATABASE_URL", "postgres://x@h/db")
    settings = load_settings()
    assert settings.database.url == "postgres://x@h/db"
    assert not settings.database.is_sqlite
    assert not settings.database.should_auto_migrate


def test_nested_field_with_underscores_parses(monkeypatch: pytest.MonkeyPatch) -> None:
    """A field whose name has underscores (PARLEY_DATABASE_POOL_MAX_SIZE) lands in its section."""
    monkeypatch.setenv("PARLEY_DATABASE_POOL_MAX_SIZE", "42")
    monkeypatch.setenv("PARLEY_AUTH_OTP_TTL", "600")
    settings = load_settings()
    assert settings.database.pool_max_size == 42
    assert settings.auth.otp_ttl == 600


def test_non_integer_pool_size_names_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """PARLEY_DATABASE_POOL_MAX_SIZE=abc raises ConfigurationError naming the variable."""
    message = load_error(monkeypatch, "PARLEY_DATABASE_POOL_MAX_SIZE", "abc")
    assert "PARLEY_DATABASE_POOL_MAX_SIZE" in message


def test_unsupported_database_scheme_names_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """PARLEY_DATABASE_URL=mysql://x raises ConfigurationError naming the variable."""
    assert "PARLEY_DATABASE_URL" in load_error(monkeypatch, "PARLEY_DATABASE_URL", "mysql://x")


def test_non_redis_url_names_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """PARLEY_REDIS_URL=http://x raises ConfigurationError naming the variable."""
    assert "PARLEY_REDIS_URL" in load_error(monkeypatch, "PARLEY_REDIS_URL", "http://x")


def test_otp_ttl_above_ten_minutes_names_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """PARLEY_AUTH_OTP_TTL=601 is refused: an OTP lives ten minutes at most."""
    assert "PARLEY_AUTH_OTP_TTL" in load_error(monkeypatch, "PARLEY_AUTH_OTP_TTL", "601")


def test_unknown_section_names_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """A misspelt section (PARLEY_DATABSE_URL) raises ConfigurationError naming it."""
    message = load_error(monkeypatch, "PARLEY_DATABSE_URL", "postgres://x@h/db")
    assert "PARLEY_DATABSE_URL" in message


def test_unknown_field_in_known_section_names_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """An unknown field of a known section (PARLEY_DATABASE_BOGUS) raises naming it."""
    assert "PARLEY_DATABASE_BOGUS" in load_error(monkeypatch, "PARLEY_DATABASE_BOGUS", "1")


def test_lowercase_variable_is_reported_by_its_name(monkeypatch: pytest.MonkeyPatch) -> None:
    """Variable names are case-insensitive: parley_redis_url=http://x is refused naming it."""
    message = load_error(monkeypatch, "parley_redis_url", "http://x")
    assert "PARLEY_REDIS_URL" in message.upper()


def test_test_suite_variables_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    """PARLEY_TEST_ANYTHING belongs to the test suite and does not stop start-up."""
    monkeypatch.setenv("PARLEY_TEST_ANYTHING", "whatever")
    assert load_settings().database.url.startswith("sqlite://")


def test_list_settings_are_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    """Origins are given comma-separated, the way an operator writes them, and split cleanly."""
    monkeypatch.setenv(
        "PARLEY_REALTIME_CORS_ALLOWED_ORIGINS", "https://a.example, https://b.example,"
    )
    origins = load_settings().realtime.cors_allowed_origins
    assert split_list(origins) == ["https://a.example", "https://b.example"]
    assert split_list(load_settings().server.cors_origins) == []


def test_settings_are_frozen() -> None:
    """Assigning to the settings or to one of its sections raises."""
    settings = load_settings()
    with pytest.raises(ValidationError):
        settings.database = settings.database
    with pytest.raises(ValidationError):
        settings.database.url = "postgres://x@h/db"
    assert settings.database.url.startswith("sqlite://")
