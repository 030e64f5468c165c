"""One structured log line per request (type, location, per-outcome counts, latency), plus one per
refused event; no contact details or message bodies in logs; and EMF metrics: EventsReceived by type
and outcome, SignatureFailures, EventsSpilled."""

from __future__ import annotations

import json
import sys
from typing import Any

import pytest

from tests.helpers import ROOT
from tests.integration.test_webhook_support import (
    Intake,
    activity_event,
    ghl_body,
    ghl_event,
    intake_fixture,  # noqa: F401  (the `intake` fixture)
)

SECRET_BODY = "Call me at 305-555-0199 or jane.buyer@example.com about 12 Palm Ave"


def lines(captured: str) -> list[dict[str, Any]]:
    out = []
    for line in captured.splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def logged(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    """What the Powertools Logger wrote: each record's message and extra keys."""
    return [{"message": r.getMessage(), **r.__dict__} for r in caplog.records]


def test_each_request_logs_one_line_with_type_location_outcome_and_latency(
    intake: Intake, caplog: pytest.LogCaptureFixture
) -> None:
    intake(ghl_event(ghl_body("inbound_message_sms", body=SECRET_BODY)))
    requests = [line for line in logged(caplog) if line["message"] == "webhook request"]
    assert len(requests) == 1
    line = requests[0]
    assert (line["event_type"], line["location_id"], line["outcome"], line["outcomes"]) == (
        "InboundMessage",
        "l1C08ntBrFjLS0elLIYU",
        "accepted",
        {"accepted": 1},
    )
    assert line["latency_ms"] >= 0


def test_a_batch_logs_one_line_with_its_outcome_counts_and_one_per_refused_event(
    intake: Intake, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    event = {"type": "activity", "location_id": "loc-1", "signal": "listing_view"}
    batch = [event | {"contact_id": f"c-{i}"} for i in range(3)] + [event | {"contact_id": "c-9", "signal": "x"}]
    assert intake(activity_event({"events": batch}))[0] == 200
    requests = [line for line in logged(caplog) if line["message"] == "webhook request"]
    assert [line["outcomes"] for line in requests] == [{"accepted": 3, "rejected": 1}]
    [refused] = [line for line in logged(caplog) if line["message"] == "webhook event refused"]
    assert refused["index"] == 3
    assert "signal must be one of" in refused["reason"]
    emitted = [line for line in lines(capfd.readouterr().out) if "EventsReceived" in line]
    assert sorted((m["outcome"], m["EventsReceived"]) for m in emitted) == [("accepted", [3.0]), ("rejected", [1.0])]


def test_logs_never_hold_phone_numbers_emails_or_message_bodies(
    intake: Intake, caplog: pytest.LogCaptureFixture
) -> None:
    intake(ghl_event(ghl_body("inbound_message_sms", body=SECRET_BODY)))
    intake(ghl_event(ghl_body("contact_create")))
    intake(ghl_event(ghl_body("contact_create"), signature=None))
    out = json.dumps(logged(caplog), default=str)
    assert "webhook request" in out
    for secret in ("305-555-0199", "jane.buyer@example.com", "Palm Ave", "+18135550142", "JohnDeo@gmail.comm"):
        assert secret not in out


def test_metrics_count_events_by_type_and_outcome(intake: Intake, capfd: pytest.CaptureFixture[str]) -> None:
    body = ghl_body("inbound_message_sms")
    intake(ghl_event(body))
    intake(ghl_event(body))
    emitted = [line for line in lines(capfd.readouterr().out) if "EventsReceived" in line]
    outcomes = {(m["event_type"], m["outcome"]): m["EventsReceived"] for m in emitted}
    assert outcomes[("InboundMessage", "accepted")] in (1, [1])
    assert ("InboundMessage", "duplicate") in outcomes


def test_a_bad_signature_counts_a_signature_failure(intake: Intake, capfd: pytest.CaptureFixture[str]) -> None:
    intake(ghl_event(ghl_body("contact_create"), signature=None))
    assert any("SignatureFailures" in line for line in lines(capfd.readouterr().out))


def test_importing_the_webhook_handler_does_not_import_anthropic() -> None:
    import subprocess

    code = (
        "import importlib.util, sys;"
        f"spec = importlib.util.spec_from_file_location('webhook_app', r'{ROOT / 'functions/webhook/app.py'}');"
        "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module);"
        "print('anthropic' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert result.stdout.strip() == "False"
