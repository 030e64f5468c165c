"""Settings from the environment: defaults, validation messages a user understands, secrets by ARN."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from leadflow.config import ConfigError, Settings, settings


@pytest.fixture
def secrets() -> Iterator[Any]:
    """Secrets Manager in moto, with Powertools' provider cache emptied so no value leaks between tests."""
    from aws_lambda_powertools.utilities.parameters.base import DEFAULT_PROVIDERS

    DEFAULT_PROVIDERS.clear()
    with mock_aws():
        yield boto3.client("secretsmanager", region_name="us-east-1")
    DEFAULT_PROVIDERS.clear()


def test_defaults_follow_the_contract() -> None:
    config = settings()
    assert (config.redis_url, config.sending_hours, config.default_timezone, config.min_likelihood) == (
        "redis://127.0.0.1:6379/0",
        (8, 21),
        "America/New_York",
        50.0,
    )


def test_sending_hours_are_read_as_start_and_end(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SENDING_HOURS", "9-20")
    assert settings().sending_hours == (9, 20)


@pytest.mark.parametrize("value", ["8to21", "eight-nine", "8-", "8:00-21:00"])
def test_malformed_sending_hours_say_what_they_must_look_like(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("SENDING_HOURS", value)
    with pytest.raises(ConfigError, match="SENDING_HOURS must look like 8-21"):
        settings()


@pytest.mark.parametrize("value", ["21-8", "8-25", "10-11"])
def test_sending_hours_outside_the_day_or_under_two_hours_are_rejected(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("SENDING_HOURS", value)
    with pytest.raises(ConfigError, match="SENDING_HOURS must be START-END within 0-24 and at least 2 hours wide"):
        settings()


def test_an_unknown_timezone_is_rejected_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEFAULT_TIMEZONE", "Mars/Olympus_Mons")
    with pytest.raises(ConfigError, match="DEFAULT_TIMEZONE 'Mars/Olympus_Mons' is not an IANA time zone"):
        settings()


def test_a_redis_url_of_another_scheme_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "http://cache:6379")
    with pytest.raises(ConfigError, match="REDIS_URL must start with redis:// or rediss://"):
        settings()


def test_send_mode_defaults_to_dry_run_without_a_ghl_key() -> None:
    assert settings().send_mode == "dry-run"


def test_send_mode_defaults_to_live_with_a_ghl_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GHL_API_KEY", "pit-123")
    assert settings().send_mode == "live"


def test_send_mode_defaults_to_live_with_a_ghl_key_secret_arn(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GHL_API_KEY_SECRET_ARN", "arn:aws:secretsmanager:us-east-1:123456789012:secret:ghl")
    assert settings().send_mode == "live"


def test_an_explicit_send_mode_wins_over_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GHL_API_KEY", "pit-123")
    monkeypatch.setenv("SEND_MODE", "dry-run")
    assert settings().send_mode == "dry-run"


def test_an_unknown_send_mode_is_rejected_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEND_MODE", "maybe")
    with pytest.raises(ConfigError, match="SEND_MODE"):
        settings()


def test_variable_names_are_matched_in_any_case(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("min_likelihood", "70")
    monkeypatch.setenv("Sending_Hours", "9-20")
    assert (settings().min_likelihood, settings().sending_hours) == (70.0, (9, 20))


def test_values_given_in_code_win_over_the_environment_which_fills_the_rest(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIN_LIKELIHOOD", "70")
    monkeypatch.setenv("SENDING_HOURS", "9-20")
    config = Settings(min_likelihood=10)
    assert (config.min_likelihood, config.sending_hours) == (10.0, (9, 20))


def test_values_given_in_code_are_validated_as_the_environment_is() -> None:
    with pytest.raises(ValueError, match="SENDING_HOURS must look like 8-21"):
        Settings(sending_hours="8to21")


def test_settings_are_frozen() -> None:
    with pytest.raises(ValueError, match="frozen"):
        settings().min_likelihood = 1  # type: ignore[misc]


def test_settings_are_read_once(monkeypatch: pytest.MonkeyPatch) -> None:
    first = settings()
    monkeypatch.setenv("SENDING_HOURS", "9-20")
    assert settings() is first


def test_a_plain_secret_needs_no_aws() -> None:
    assert settings().ghl_token() is None


def test_a_secret_arn_is_fetched_from_secrets_manager(monkeypatch: pytest.MonkeyPatch, secrets: Any) -> None:
    arn = secrets.create_secret(Name="leadflow/ghl", SecretString="pit-from-secrets")["ARN"]
    monkeypatch.setenv("GHL_API_KEY_SECRET_ARN", arn)
    assert settings().ghl_token() == "pit-from-secrets"


@pytest.mark.parametrize(
    ("variable", "getter"),
    [
        ("ANTHROPIC_API_KEY_SECRET_ARN", "anthropic_key"),
        ("WORKFLOW_WEBHOOK_TOKEN_SECRET_ARN", "workflow_token"),
        ("WEBHOOK_SIGNING_SECRET_SECRET_ARN", "signing_secret"),
    ],
)
def test_every_secret_can_come_by_arn(
    monkeypatch: pytest.MonkeyPatch, secrets: Any, variable: str, getter: str
) -> None:
    arn = secrets.create_secret(Name=f"leadflow/{getter}", SecretString=f"value-{getter}")["ARN"]
    monkeypatch.setenv(variable, arn)
    assert getattr(settings(), getter)() == f"value-{getter}"


def test_a_plain_secret_wins_over_its_arn(monkeypatch: pytest.MonkeyPatch, secrets: Any) -> None:
    arn = secrets.create_secret(Name="leadflow/ghl", SecretString="pit-from-secrets")["ARN"]
    monkeypatch.setenv("GHL_API_KEY_SECRET_ARN", arn)
    monkeypatch.setenv("GHL_API_KEY", "pit-plain")
    assert settings().ghl_token() == "pit-plain"


def test_a_fetched_secret_is_cached_for_warm_invocations(monkeypatch: pytest.MonkeyPatch, secrets: Any) -> None:
    # Given a secret fetched once
    arn = secrets.create_secret(Name="leadflow/ghl", SecretString="first")["ARN"]
    monkeypatch.setenv("GHL_API_KEY_SECRET_ARN", arn)
    settings().ghl_token()
    # When the secret changes in Secrets Manager
    secrets.put_secret_value(SecretId=arn, SecretString="second")
    # Then the cached value is served without refetching
    assert settings().ghl_token() == "first"
