"""Webhook intake: verify (verify), map GHL events, website activity and workflow webhooks to lead
actions (ghl, activity, workflow), record them with the fast path (service), and spill to SQS when
Redis is down (spill)."""

from leadflow.intake.service import Reply, handle_request, replay

__all__ = ["Reply", "handle_request", "replay"]
