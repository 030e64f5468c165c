"""End to end over real HTTP: signed webhooks into the local stack's Function URL, the HTTP API
(JWT) out, follow-up jobs through moto's SQS, the dry-run outbox, the dead-letter queue."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from leadflow.cli import activity_event, ghl_event, sign_activity, sign_ghl
from tests.e2e.conftest import INTERVAL, Stack, wait_for
from tests.helpers import zone_at

pytestmark = pytest.mark.e2e  # one file: `--dist loadfile` runs it on one worker, with one stack

URGENT_SIGNALS = [
    "pricing_tool_usage",
    "pricing_tool_usage",
    "pricing_tool_usage",
    "neighborhood_research",
    "neighborhood_research",
    "market_report_engagement",
    "market_report_engagement",
]


def send_ghl(stack: Stack, location_id: str, kind: str, contact_id: str, **fields: Any) -> Any:
    body = json.dumps(ghl_event(kind, location_id, contact_id, **fields)).encode()
    return stack.post_webhook("ghl", body, sign_ghl(body, stack.keys.ghl_private_pem))


def send_activity(stack: Stack, location_id: str, contact_id: str, signal: str) -> Any:
    body = json.dumps(activity_event(location_id, contact_id, signal)).encode()
    return stack.post_webhook("activity", body, sign_activity(body, stack.keys.signing_secret))


def create_contact(stack: Stack, location_id: str, contact_id: str, source: str = "Home Value Form") -> None:
    """A GHL ContactCreate for a lead whose local time is midday (inside sending hours)."""
    reply = send_ghl(
        stack, location_id, "ContactCreate", contact_id, firstName="Ana", phone="+16175550100",
        email="ana@example.com", source=source, timezone=zone_at(12),
    )  # fmt: skip
    assert reply.status_code == 200, reply.text


def make_urgent(stack: Stack, location_id: str, contact_id: str, more: tuple[str, ...] = ()) -> None:
    for signal in [*URGENT_SIGNALS, *more]:
        reply = send_activity(stack, location_id, contact_id, signal)
        assert reply.json() == {"status": "accepted"}


def messages(stack: Stack, location_id: str, contact_id: str) -> list[dict[str, Any]]:
    reply = stack.api("GET", f"/leads/{contact_id}/messages", location_id)
    assert reply.status_code == 200, reply.text
    return list(reply.json()["messages"])


def test_signed_webhooks_make_a_lead_whose_score_the_api_returns(stack: Stack, location_id: str) -> None:
    create_contact(stack, location_id, "lead-score")
    for signal in ("pricing_tool_usage", "neighborhood_research"):
        assert send_activity(stack, location_id, "lead-score", signal).json() == {"status": "accepted"}

    reply = stack.api("GET", "/leads/lead-score/score", location_id)

    assert reply.status_code == 200
    score = reply.json()
    assert score["lead_id"] == "lead-score"
    assert score["intent_level"] in ("warm", "hot", "urgent")
    assert {s["type"] for s in score["key_signals"]} >= {"pricing_tool_usage", "neighborhood_research", "agent_inquiry"}


def test_webhooks_with_a_bad_signature_are_refused_and_record_nothing(stack: Stack, location_id: str) -> None:
    body = json.dumps(ghl_event("ContactCreate", location_id, "lead-forged", firstName="Eve")).encode()
    forged = sign_ghl(body + b" ", stack.keys.ghl_private_pem)

    assert stack.post_webhook("ghl", body, forged).status_code == 401
    assert stack.post_webhook("activity", body, {"content-type": "application/json"}).status_code == 401
    assert stack.api("GET", "/leads/lead-forged/score", location_id).status_code == 404


def test_the_http_api_wants_a_valid_jwt(stack: Stack, location_id: str) -> None:
    assert stack.api("GET", "/followups/stats", location_id, token="").status_code == 401
    assert stack.api("GET", "/followups/stats", location_id, token="not.a.jwt").status_code == 401
    expired = stack.keys.token(ttl=-60)
    assert stack.api("GET", "/followups/stats", location_id, token=expired).status_code == 401
    assert stack.api("GET", "/followups/stats", location_id).status_code == 200


def test_an_urgent_lead_gets_a_job_through_the_queue_and_a_message_in_the_outbox(
    stack: Stack, location_id: str
) -> None:
    # a lead from an ad, not a form: no agent inquiry, so a text is recommended rather than a call
    create_contact(stack, location_id, "lead-urgent", source="Facebook Ad")
    make_urgent(stack, location_id, "lead-urgent", more=("property_search",) * 3)

    sent = wait_for(lambda: [m for m in messages(stack, location_id, "lead-urgent") if m["status"] == "sent"], 15)

    assert sent[0]["channel"] == "sms"
    assert "Ana" in sent[0]["body"]
    assert sent[0]["body"].endswith("Reply STOP to opt out.")
    stats = stack.api("GET", "/followups/stats", location_id).json()
    assert stats["total_tasks"] >= 1
    assert stats["sent"] >= 1
    assert stats["send_mode"] == "dry-run"


def test_an_urgent_lead_who_asked_for_an_agent_is_handed_off_never_texted(stack: Stack, location_id: str) -> None:
    # The monitor waits while the lead's events arrive (a run between them could text a lead that
    # was only hot then, before it asked for an agent); the webhook's fast path does not wait.
    assert stack.api("PUT", "/followups/monitoring", location_id, {"enabled": False}).status_code == 200
    try:
        create_contact(stack, location_id, "lead-call")  # a home-value form: an agent inquiry
        make_urgent(stack, location_id, "lead-call")
        assert stack.api("GET", "/leads/lead-call/score", location_id).json()["recommended_channel"] == "call"
        handed = wait_for(
            lambda: [m for m in messages(stack, location_id, "lead-call") if m["status"] == "handed_off"], 15
        )
    finally:
        stack.api("PUT", "/followups/monitoring", location_id, {"enabled": True})
    time.sleep(2 * INTERVAL + 1)  # two monitor runs go by

    assert handed[0]["channel"] == "call"
    assert handed[0]["body"].startswith("Call Ana: urgent, ")
    assert [m["status"] for m in messages(stack, location_id, "lead-call")] == ["handed_off"], messages(
        stack, location_id, "lead-call"
    )
    assert stack.api("GET", "/followups/stats", location_id).json()["handed_off"] >= 1


def test_a_lead_who_replied_stop_gets_nothing_afterwards(stack: Stack, location_id: str) -> None:
    create_contact(stack, location_id, "lead-stop")
    reply = send_ghl(stack, location_id, "InboundMessage", "lead-stop", messageType="SMS", body="STOP")
    assert reply.json() == {"status": "accepted"}

    make_urgent(stack, location_id, "lead-stop")
    assert stack.api("GET", "/leads/lead-stop/score", location_id).json()["intent_level"] == "urgent"
    on_demand = stack.api("POST", "/leads/lead-stop/messages", location_id, {"channel": "sms"})
    time.sleep(2 * INTERVAL + 1)  # two monitor runs go by

    assert on_demand.status_code == 409
    assert on_demand.json()["reason"] == "opted_out"
    assert messages(stack, location_id, "lead-stop") == []


def test_a_job_that_fails_every_time_lands_in_the_dead_letter_queue(stack: Stack, location_id: str) -> None:
    import boto3

    sqs = boto3.client(
        "sqs",
        endpoint_url=stack.health["moto_endpoint"],
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )
    before = stack.api("GET", "/followups/stats", location_id).json()["dlq_depth"]
    queue_url = stack.health["queues"]["FollowupQueue"]["url"]

    sqs.send_message(QueueUrl=queue_url, MessageBody="this is not a follow-up job")

    def dlq_depth() -> int | None:
        depth = stack.api("GET", "/followups/stats", location_id).json()["dlq_depth"]
        return depth if depth == before + 1 else None

    assert wait_for(dlq_depth, 45, every=0.5) == before + 1


def test_the_leadflow_cli_sends_a_signed_webhook_and_shows_the_lead(
    stack: Stack, location_id: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from leadflow.cli import main

    sent = main(
        ["send-webhook", "activity", "--url", stack.base, "--secret", stack.keys.signing_secret,
         "--location-id", location_id, "--contact-id", "lead-cli", "--signal", "market_report_engagement"]
    )  # fmt: skip
    shown = main(["show", "lead-cli", "--api", stack.base, "--token", stack.keys.token(), "--location-id", location_id])

    out = capsys.readouterr().out
    assert (sent, shown) == (0, 0)
    assert '"status": "accepted"' in out
    assert "lead-cli" in out
    assert "market_report_engagement" in out
