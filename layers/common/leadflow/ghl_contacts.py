"""GHL's contact, task and custom-field endpoints (Version 2021-07-28), for the write-back and the
agent handoff, behind one function: `ghl_request`. One attempt per call; the caller decides what a
failure means (a write-back is idempotent and retried by SQS; a task is never POSTed twice).

Failures are ghl.py's: TransientFailure (certainly not done: a connect error, a 429, a 5xx),
PermanentFailure (a 4xx), OutcomeUnknown (the request may have reached GHL). Every call takes a
token from the rate limiter all senders of the location share.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import httpx

from leadflow import ghl
from leadflow.config import settings
from leadflow.observability import logger

API_VERSION = "2021-07-28"


def path_id(value: str) -> str:
    """An id as one path segment: ids are data, never a path of their own."""
    return quote(value, safe="")


def live() -> bool:
    """Whether GHL is called: SEND_MODE live and a token. Otherwise (dry-run) the act goes to the outbox."""
    config = settings()
    return config.send_mode == "live" and bool(config.ghl_token())


@functools.cache
def http() -> httpx.Client:
    return httpx.Client(timeout=ghl.TIMEOUT)


def ghl_request(
    location_id: str,
    method: str,
    path: str,
    json: dict[str, Any] | None = None,
    *,
    before: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """One GHL request for `location_id`; its JSON reply. `before` runs after the rate-limit wait,
    right before the request: the last chance to stop (it raises) and to record the attempt."""
    config = settings()
    token = config.ghl_token()
    if not token:
        raise ghl.PermanentFailure("no GHL API key configured")
    limiter = ghl.RateLimiter()
    limiter.acquire(location_id)
    if before is not None:
        before()
    headers = {"Authorization": f"Bearer {token}", "Version": API_VERSION, "Accept": "application/json"}
    url = config.ghl_api_base_url.rstrip("/") + path
    try:
        response = http().request(method, url, json=json, headers=headers)
    except ghl.NOT_SENT as exc:
        raise ghl.TransientFailure(f"network: {type(exc).__name__}") from exc
    except httpx.HTTPError as exc:  # read timeout, reset, protocol error: GHL may have acted
        raise ghl.OutcomeUnknown(f"outcome_unknown: {type(exc).__name__}") from exc
    if response.status_code == 429:
        _drain(limiter, location_id, _seconds(response.headers.get("Retry-After"), 1.0))
        raise ghl.TransientFailure("rate_limited")
    if response.headers.get("X-RateLimit-Remaining") == "0":
        interval = _seconds(response.headers.get("X-RateLimit-Interval-Milliseconds"), 10_000.0) / 1000
        _drain(limiter, location_id, interval)
    if response.status_code >= 500:
        raise ghl.TransientFailure(f"ghl_{response.status_code}")
    if response.status_code >= 400:
        raise ghl.PermanentFailure(f"ghl_{response.status_code}: {_error_text(response)}")
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _seconds(raw: str | None, default: float) -> float:
    try:
        return max(0.0, float(raw)) if raw is not None else default
    except ValueError:
        return default


def _drain(limiter: ghl.RateLimiter, location_id: str, seconds: float) -> None:
    """Share GHL's word that the allowance is spent; never turn a reply into an error over it."""
    try:
        limiter.drain(location_id, seconds)
    except Exception as exc:
        logger.warning("rate limit not shared", extra={"location_id": location_id, "error": type(exc).__name__})


def _error_text(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        data = {}
    message = (data.get("message") if isinstance(data, dict) else None) or response.reason_phrase
    return str(message if not isinstance(message, list) else "; ".join(map(str, message)))[:200]
