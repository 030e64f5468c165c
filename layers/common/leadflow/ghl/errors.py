"""What can go wrong with a GHL call, typed by what the caller may do next.

- TransientFailure: GHL certainly did not act (a connect error, a 429, a 5xx, or our own limiter
  said wait longer than the call's budget): the call may be made again, later.
- OutcomeUnknown: GHL may have acted (a read timeout, a reset after the request was written). An
  idempotent call may be made again; a POST that creates something (a message, a task) never is.
- PermanentFailure: GHL refused (a 4xx other than 429): the same call will be refused again.
"""

from __future__ import annotations

from typing import Any

RATE_LIMITED = "rate_limited"
NOT_INSTALLED = "not_installed"


class GhlError(Exception):
    def __init__(self, reason: str, status: int | None = None, body: dict[str, Any] | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status  # GHL's HTTP status, when it answered
        self.body = body or {}  # GHL's JSON error body (an OAuth `error` such as invalid_grant)


class PermanentFailure(GhlError):
    """GHL refused the request (4xx): repeating it will not help."""


class Unauthorized(PermanentFailure):
    """401: the token is missing, expired or revoked. GHL did not act, so after a token refresh
    the same request may be made once more, a POST included."""


class NotFound(PermanentFailure):
    """404: no such contact, location or route."""


class NotInstalled(PermanentFailure):
    """No token for the location (token_for gave none): nothing was sent."""

    def __init__(self, location_id: str) -> None:
        super().__init__(NOT_INSTALLED)
        self.location_id = location_id


class TransientFailure(GhlError):
    """GHL certainly did not act: the call may be made again later (SQS retries a job)."""


class RateLimited(TransientFailure):
    """GHL's limit for the location: a 429, or more waiting than the call's budget allows."""

    def __init__(self, reason: str = RATE_LIMITED, status: int | None = None, body: dict[str, Any] | None = None):
        super().__init__(reason, status, body)


class DailyQuotaSpent(RateLimited):
    """GHL's daily allowance for the location is spent: nothing more goes to GHL until `until`
    (epoch seconds). A follow-up ends `skipped` with reason `rate_limited` rather than retrying."""

    def __init__(self, until: float, status: int | None = None, body: dict[str, Any] | None = None) -> None:
        super().__init__(RATE_LIMITED, status, body)
        self.until = until


class OutcomeUnknown(GhlError):
    """GHL may have acted on the request: a POST that creates something is never repeated."""
