"""Settings: one object read from the environment once, names exactly as the contract's table.

Secrets come plain (`GHL_API_KEY`) or by reference (`GHL_API_KEY_SECRET_ARN`), the latter fetched
through Powertools parameters (cached, so warm invocations do not refetch).

A plain pydantic model reads the environment itself: each field from the variable of its name, in
any case, keyword arguments first (what pydantic-settings did here, without its import at init).
"""

from __future__ import annotations

import functools
import os
import re
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

# GHL's published Ed25519 webhook key (Webhook Integration Guide), base64 SPKI.
GHL_PUBLISHED_ED25519_KEY = "MCowBQYDK2VwAyEAi2HR1srL4o18O8BRa7gVJY7G7bupbN3H9AwJrHCDiOg="

SECRET_TTL_SECONDS = 300

# Candidates one invocation rescores. bench/fanout.py measured about 3,400 per CPU-second on the
# development machine: a shard of this size is about 15 CPU-seconds there. The monitor's 1,024 MB
# Lambda has a little over half a vCPU, so we expect (not measured on Lambda) about 30 s with its
# Redis and SQS round trips, a quarter of its 120 s timeout. One invocation over the bench's 194,200
# candidates took 121 s of wall time on the development machine (under load).
DEFAULT_SHARD_LEADS = 50_000  # MONITOR_SHARD_LEADS


class ConfigError(RuntimeError):
    """The environment does not describe a usable configuration; the message says what to fix."""


class Settings(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, validate_default=True)

    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_cluster: bool = False
    followup_queue_url: str | None = None
    intake_queue_url: str | None = None

    ghl_location_id: str | None = None
    ghl_api_key: str | None = None
    ghl_api_key_secret_arn: str | None = None
    ghl_api_base_url: str = "https://services.leadconnectorhq.com"
    ghl_webhook_public_key: str = GHL_PUBLISHED_ED25519_KEY
    ghl_webhook_rsa_public_key: str | None = None

    workflow_webhook_token: str | None = None
    workflow_webhook_token_secret_arn: str | None = None
    webhook_signing_secret: str | None = None
    webhook_signing_secret_secret_arn: str | None = None

    ghl_client_id: str | None = None  # the marketplace app's OAuth client: marketplace mode when set
    ghl_client_secret: str | None = None
    ghl_client_secret_secret_arn: str | None = None
    ghl_redirect_uri: str | None = None
    installations_table: str | None = None

    anthropic_api_key: str | None = None
    anthropic_api_key_secret_arn: str | None = None
    anthropic_model: str = "claude-haiku-4-5"

    send_mode: Literal["live", "dry-run"] | None = None
    behavioral_monitoring_interval: int = Field(300, ge=10)
    max_daily_followups_per_lead: int = Field(3, ge=0)
    min_likelihood: float = Field(50.0, ge=0, le=100)
    sending_hours: tuple[int, int] = (8, 21)  # "8-21", not JSON
    default_timezone: str = "America/New_York"
    stop_on_reply_hours: float = Field(48.0, ge=0)
    lead_ttl_days: int = Field(180, ge=1)
    monitor_shard_leads: int = Field(DEFAULT_SHARD_LEADS, ge=1)  # a run with more candidates fans out
    monitor_shard_queue_url: str | None = None  # unset: every run is done by one invocation

    def __init__(self, **values: Any) -> None:
        environ = {name.lower(): value for name, value in os.environ.items()}
        from_env = {name: environ[name] for name in type(self).model_fields if name in environ}
        super().__init__(**{**from_env, **values})

    @field_validator("sending_hours", mode="before")
    @classmethod
    def _parse_hours(cls, value: object) -> object:
        if isinstance(value, str):
            match = re.fullmatch(r"\s*(\d{1,2})\s*-\s*(\d{1,2})\s*", value)
            if not match:
                raise ValueError("SENDING_HOURS must look like 8-21")
            value = (int(match[1]), int(match[2]))
        return value

    @field_validator("sending_hours")
    @classmethod
    def _check_hours(cls, value: tuple[int, int]) -> tuple[int, int]:
        start, end = value
        if not (0 <= start < end <= 24) or end - start < 2:
            raise ValueError("SENDING_HOURS must be START-END within 0-24 and at least 2 hours wide")
        return value

    @field_validator("default_timezone")
    @classmethod
    def _check_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"DEFAULT_TIMEZONE {value!r} is not an IANA time zone") from exc
        return value

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str) -> str:
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("REDIS_URL must start with redis:// or rediss://")
        return value

    @model_validator(mode="after")
    def _default_send_mode(self) -> Settings:
        if self.send_mode is None:
            has_key = bool(self.ghl_api_key or self.ghl_api_key_secret_arn or self.ghl_client_id)
            object.__setattr__(self, "send_mode", "live" if has_key else "dry-run")
        if self.ghl_client_id and not self.installations_table:
            raise ValueError("INSTALLATIONS_TABLE is required with GHL_CLIENT_ID")
        return self

    @property
    def marketplace(self) -> bool:
        """Marketplace mode: tokens per location from installations (GHL_API_KEY still serves its own)."""
        return bool(self.ghl_client_id)

    # Secrets: plain value first, then the Secrets Manager reference.
    def ghl_token(self) -> str | None:
        return _secret(self.ghl_api_key, self.ghl_api_key_secret_arn)

    def client_secret(self) -> str | None:
        return _secret(self.ghl_client_secret, self.ghl_client_secret_secret_arn)

    def anthropic_key(self) -> str | None:
        return _secret(self.anthropic_api_key, self.anthropic_api_key_secret_arn)

    def workflow_token(self) -> str | None:
        return _secret(self.workflow_webhook_token, self.workflow_webhook_token_secret_arn)

    def signing_secret(self) -> str | None:
        return _secret(self.webhook_signing_secret, self.webhook_signing_secret_secret_arn)

    def location(self, location_id: str | None) -> str:
        """The location a request means: its own, else GHL_LOCATION_ID, else 'default'."""
        return location_id or self.ghl_location_id or "default"


def _secret(plain: str | None, arn: str | None) -> str | None:
    if plain:
        return plain
    if not arn:
        return None
    value = _secrets().get(arn, max_age=SECRET_TTL_SECONDS)
    return value if isinstance(value, str) else value.decode()


@functools.cache
def _secrets() -> Any:
    """Secrets Manager with timeouts that fit the webhook's 10 s (boto3's defaults are 60 s)."""
    from aws_lambda_powertools.utilities.parameters import SecretsProvider
    from botocore.config import Config

    return SecretsProvider(boto_config=Config(connect_timeout=1, read_timeout=2, retries={"max_attempts": 2}))


@functools.cache
def settings() -> Settings:
    """The settings, read once per process. Tests call `settings.cache_clear()` after changing the env."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc']).upper()}: {err['msg']}" for err in exc.errors())
        raise ConfigError(f"invalid configuration: {problems}") from None
