"""Domain errors, raised deep and mapped to HTTP once per function."""

from __future__ import annotations


class LeadflowError(Exception):
    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(LeadflowError):
    """Input that parses but cannot be used; the message names the field."""

    status = 422


class LeadNotFound(LeadflowError):
    status = 404

    def __init__(self, lead_id: str) -> None:
        super().__init__(f"unknown lead: {lead_id}")


class StoreUnavailable(LeadflowError):
    """Redis cannot be reached (circuit open or connection failed)."""

    status = 503


class GuardrailBlocked(LeadflowError):
    """A send the guardrails forbid now: 409 with the reason."""

    status = 409

    def __init__(self, reason: str) -> None:
        super().__init__(f"follow-up blocked: {reason}")
        self.reason = reason
