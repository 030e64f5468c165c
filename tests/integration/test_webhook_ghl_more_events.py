"""The contract's "More GHL events" through POST /webhooks/ghl with real signed events: a
cancelled, invalid, no-show or deleted appointment lifts only its own pause; an abandoned
opportunity stops follow-up for good."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest
import redis

from tests.integration.test_lead_state import cluster_node
from tests.integration.test_webhook_support import (
    Intake,
    ghl_body,
    ghl_event,
    intake_fixture,  # noqa: F401  (the `intake` fixture)
    lead,
)

__all__ = ["cluster_node"]  # the module-scoped fixture, shared with the lead state tests

YEAR = 365 * 86_400
POST = "POST /conversations/messages"
# The appointment fixtures' lead and appointment (GHL's documented examples).
APPT_LOCATION, APPT_CONTACT, APPT_ID = "0007BWpSzSwfiuSl0tR2", "9NkT25Vor1v4aQatFsv2", "0007BWpSzSwfiuSl0tR2"


# --- appointments --------------------------------------------------------------------------------


def appointment(
    name: str = "appointment_create",
    *,
    status: str = "confirmed",
    appointment_id: str = APPT_ID,
    at: float | None = None,
) -> dict[str, Any]:
    """A signed appointment event for the fixtures' lead, with its own webhookId."""
    payload = json.loads(ghl_body(name, at=at, webhookId=str(uuid.uuid4())))
    payload["appointment"] |= {"id": appointment_id, "appointmentStatus": status}
    return ghl_event(json.dumps(payload).encode())


def on_appointment_lead(name: str, **changes: Any) -> dict[str, Any]:
    """Another GHL event (top-level contactId) for the appointment fixtures' lead."""
    fields = {"locationId": APPT_LOCATION, "contactId": APPT_CONTACT, "webhookId": str(uuid.uuid4())}
    return ghl_event(ghl_body(name, **fields | changes))


def appointment_lead() -> Any:
    return lead(APPT_CONTACT, APPT_LOCATION)


LIFTING = [
    pytest.param("appointment_update", "cancelled", id="cancelled"),
    pytest.param("appointment_update", "invalid", id="invalid"),
    pytest.param("appointment_update", "noshow", id="noshow"),
    pytest.param("appointment_delete", "confirmed", id="deleted"),
]


@pytest.mark.parametrize(("name", "status"), LIFTING)
def test_a_cancelled_invalid_noshow_or_deleted_appointment_lifts_its_pause(
    intake: Intake, name: str, status: str
) -> None:
    intake(appointment())
    assert appointment_lead().paused(time.time())
    assert intake(appointment(name, status=status)) == (200, {"status": "accepted"})
    stored = appointment_lead()
    assert stored.appointments == frozenset()
    assert not stored.paused(time.time())


@pytest.mark.parametrize(("name", "status"), LIFTING)
def test_lifting_one_appointment_leaves_another_booked_one_holding(intake: Intake, name: str, status: str) -> None:
    intake(appointment(appointment_id="appt-a"))
    intake(appointment(appointment_id="appt-b"))
    intake(appointment(name, status=status, appointment_id="appt-a"))
    stored = appointment_lead()
    assert stored.appointments == {"appt-b"}
    assert stored.paused(time.time())


@pytest.mark.parametrize(("name", "status"), LIFTING)
def test_lifting_an_appointment_leaves_a_replys_pause_holding(intake: Intake, name: str, status: str) -> None:
    intake(appointment())
    intake(on_appointment_lead("inbound_message_sms", body="Can we move it to Friday?"))
    intake(appointment(name, status=status))
    stored = appointment_lead()
    assert stored.appointments == frozenset()
    assert stored.paused_until > time.time() + 3600
    assert stored.paused(time.time())


@pytest.mark.parametrize(("name", "status"), LIFTING)
def test_lifting_an_appointment_leaves_a_lost_opportunity_stopped(intake: Intake, name: str, status: str) -> None:
    intake(appointment())
    intake(on_appointment_lead("opportunity_status_update", status="lost"))
    intake(appointment(name, status=status))
    stored = appointment_lead()
    assert stored.outcome == "lost"
    assert stored.paused(time.time() + 10 * YEAR)


@pytest.mark.parametrize(("name", "status"), LIFTING)
def test_lifting_an_appointment_leaves_an_opt_out_standing(intake: Intake, name: str, status: str) -> None:
    intake(appointment())
    intake(on_appointment_lead("inbound_message_sms", body="STOP"))
    assert intake(appointment(name, status=status)) == (200, {"status": "accepted"})
    assert appointment_lead().appointments == frozenset()
    profile = appointment_lead().profile
    assert profile.opted_out
    assert not profile.can_reach("sms")


def test_an_appointment_updated_as_confirmed_pauses_follow_up(intake: Intake) -> None:
    assert intake(appointment("appointment_update", status="confirmed")) == (200, {"status": "accepted"})
    assert appointment_lead().appointments == {APPT_ID}
    assert appointment_lead().paused(time.time())


def test_a_late_older_cancel_never_lifts_a_newer_booking(intake: Intake) -> None:
    # Given an appointment confirmed now
    intake(appointment("appointment_update", status="confirmed"))
    # When a cancel from ten minutes earlier arrives late (a GHL retry)
    intake(appointment("appointment_update", status="cancelled", at=time.time() - 600))
    # Then the appointment is still booked
    assert appointment_lead().appointments == {APPT_ID}


# --- opportunities -------------------------------------------------------------------------------


def test_an_abandoned_opportunity_stops_follow_up_for_good_and_records_the_outcome(intake: Intake) -> None:
    assert intake(ghl_event(ghl_body("opportunity_status_update", status="abandoned"))) == (
        200,
        {"status": "accepted"},
    )
    stored = lead("cJAWDskpkJHbRbhAT7bs", "ve9EPM428h8vShlRW1KT")
    assert stored.outcome == "abandoned"
    assert stored.paused(time.time() + 10 * YEAR)


# --- cluster mode (ElastiCache Serverless) -------------------------------------------------------


def test_appointments_work_in_cluster_mode(cluster_node: int, monkeypatch: pytest.MonkeyPatch) -> None:
    from leadflow import config, redis_client
    from leadflow.lead_state import APPOINTMENT, LeadStore

    redis.Redis(port=cluster_node).flushall()
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{cluster_node}/0")
    monkeypatch.setenv("REDIS_CLUSTER", "true")
    config.settings.cache_clear()
    redis_client.cache.cache_clear()
    try:
        store = redis_client.cache()
        leads = LeadStore(store)
        booked = leads.record("loc-1", "lead-0", fields={APPOINTMENT + "a": "1", APPOINTMENT + "b": "1"})
        assert booked.state.appointments == {"a", "b"}
        lifted = leads.record("loc-1", "lead-0", fields={APPOINTMENT + "a": ""})
        assert lifted.state.appointments == {"b"}
    finally:
        redis_client.cache().close()
