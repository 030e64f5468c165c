"""The contract's "More GHL events" through POST /webhooks/ghl with real signed events: an agent's
OutboundMessage pauses follow-up, leadflow's own (its ids recorded by a live send) does not; a
cancelled, invalid, no-show or deleted appointment lifts only its own pause; an abandoned
opportunity stops follow-up for good."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest

from leadflow.config import settings
from tests.helpers import HOT, StubServer, load_app, raw_redis, seed_lead, zone_at
from tests.integration.test_send_function import deliver, history, job
from tests.integration.test_webhook_support import (
    Intake,
    ghl_body,
    ghl_event,
    intake_fixture,  # noqa: F401  (the `intake` fixture)
    lead,
)

YEAR = 365 * 86_400
POST = "POST /conversations/messages"
# The appointment fixtures' lead and appointment (GHL's documented examples).
APPT_LOCATION, APPT_CONTACT, APPT_ID = "0007BWpSzSwfiuSl0tR2", "9NkT25Vor1v4aQatFsv2", "0007BWpSzSwfiuSl0tR2"


@pytest.fixture
def send_app(intake: Intake, ghl: StubServer) -> Any:
    """The send function beside the webhook function (same Redis, same moto queues), live against
    the GHL stand-in."""
    return load_app("send")


def outbound(name: str = "outbound_message_sms", *, at: float | None = None, **changes: Any) -> dict[str, Any]:
    """A signed OutboundMessage for loc-1/hot-1, its own webhookId, with top-level changes."""
    fields = {"locationId": "loc-1", "contactId": "hot-1", "webhookId": str(uuid.uuid4())} | changes
    return ghl_event(ghl_body(name, at=at, **fields))


def paused_now(contact: str = "hot-1", location: str = "loc-1") -> bool:
    stored = lead(contact, location)
    return stored is not None and stored.paused(time.time())


# --- an agent taking over ------------------------------------------------------------------------


def test_an_agents_outbound_message_pauses_follow_up_for_stop_on_reply_hours(
    intake: Intake, send_app: Any, ghl: StubServer, lambda_context: Any
) -> None:
    # Given a lead leadflow may message
    seed_lead("hot-1", HOT, profile={"timezone": zone_at(12), "first_name": "Ana"})
    # When an agent texts the lead from GHL (the message names its user)
    before = time.time()
    assert intake(outbound(userId="agent-7", messageId="agent-msg-1")) == (200, {"status": "accepted"})
    # Then automated follow-up pauses for STOP_ON_REPLY_HOURS, and the next job is skipped
    hours = settings().stop_on_reply_hours
    assert before + hours * 3600 - 5 <= lead("hot-1").paused_until <= time.time() + hours * 3600 + 5
    assert deliver(send_app, lambda_context, job()) == {"batchItemFailures": []}
    assert ghl.calls(POST) == []
    assert (history()[0]["status"], history()[0]["reason"]) == ("skipped", "paused")


def test_an_agents_call_from_ghls_example_pauses_its_lead(intake: Intake) -> None:
    assert intake(ghl_event(ghl_body("outbound_message_call"))) == (200, {"status": "accepted"})
    assert paused_now("gblakL5aYQC4glDtP1r2t3", "0d48aEf7q67DAu134bpy")


def test_an_agents_message_never_shortens_a_longer_pause(intake: Intake) -> None:
    # Given a reply now (paused for STOP_ON_REPLY_HOURS from now)
    intake(ghl_event(ghl_body("inbound_message_sms", locationId="loc-1", contactId="hot-1", webhookId="reply-1")))
    reply_pause = lead("hot-1").paused_until
    # When an agent's message of an hour ago arrives late
    late = outbound(at=time.time() - 3600, userId="agent-7", messageId="agent-msg-1")
    assert intake(late) == (200, {"status": "accepted"})
    # Then the longer pause stands
    assert lead("hot-1").paused_until == reply_pause


@pytest.mark.parametrize(
    ("channel", "ghl_reply", "webhook"),
    [
        ("sms", {"messageId": "m-1", "conversationId": "c-1"}, {"messageId": "m-1"}),
        # GHL's OutboundMessage for an email names its emailMessageId
        ("email", {"messageId": "m-1", "emailMessageId": "e-1", "conversationId": "c-1"}, {"emailMessageId": "e-1"}),
    ],
)
def test_leadflows_own_message_does_not_pause_follow_up(
    intake: Intake,
    send_app: Any,
    ghl: StubServer,
    lambda_context: Any,
    channel: str,
    ghl_reply: dict[str, str],
    webhook: dict[str, str],
) -> None:
    # Given a message leadflow sent live, GHL answering with its ids
    ghl.replies[POST] = [(200, {}, ghl_reply)]
    seed_lead("hot-1", HOT, profile={"timezone": zone_at(12), "first_name": "Ana"})
    assert deliver(send_app, lambda_context, job(channel=channel)) == {"batchItemFailures": []}
    # When GHL reports that message as an OutboundMessage, even one naming a user
    name = "outbound_message_email" if channel == "email" else "outbound_message_sms"
    assert intake(outbound(name, userId="agent-7", **webhook)) == (200, {"status": "ignored"})
    # Then nothing pauses: the next job is sent
    assert not paused_now()
    assert deliver(send_app, lambda_context, job(job_id="job-2", channel=channel)) == {"batchItemFailures": []}
    assert len(ghl.calls(POST)) == 2
    assert [entry["status"] for entry in history()] == ["sent", "sent"]


def test_an_outbound_message_without_a_user_changes_nothing(intake: Intake) -> None:
    # GHL's documented SMS example: an automated or bulk send names no user
    assert intake(outbound("outbound_message_sms", messageId="wf-msg-1")) == (200, {"status": "ignored"})
    assert lead("hot-1") is None


def test_a_failure_to_record_leadflows_message_id_neither_fails_nor_repeats_the_send(
    intake: Intake, send_app: Any, ghl: StubServer, lambda_context: Any
) -> None:
    # Given a Redis that refuses the write of the message's id right after GHL accepted the message
    # (the key holds the wrong type: only that write fails, with a real Redis error)
    client = raw_redis(settings().redis_url)
    client.set("lf:{loc-1:hot-1}:own", "not a sorted set")
    seed_lead("hot-1", HOT, profile={"timezone": zone_at(12), "first_name": "Ana"})
    # When the job is sent, and SQS delivers it again
    assert deliver(send_app, lambda_context, job()) == {"batchItemFailures": []}
    assert deliver(send_app, lambda_context, job(), receive_count=2) == {"batchItemFailures": []}
    # Then GHL saw one request and the job ended sent, once
    assert len(ghl.calls(POST)) == 1
    assert [entry["status"] for entry in history()] == ["sent"]
    # And once Redis is well, that message's webhook, unknown as leadflow's own, pauses the lead:
    # the safe side
    client.delete("lf:{loc-1:hot-1}:own")
    assert intake(outbound(userId="agent-7", messageId="m-1")) == (200, {"status": "accepted"})
    assert paused_now()


def test_contact_delete_erases_the_record_of_leadflows_own_messages(
    intake: Intake, send_app: Any, lambda_context: Any
) -> None:
    seed_lead("hot-1", HOT, profile={"timezone": zone_at(12), "first_name": "Ana"})
    deliver(send_app, lambda_context, job())
    client = raw_redis(settings().redis_url)
    assert client.exists("lf:{loc-1:hot-1}:own")
    intake(ghl_event(ghl_body("contact_delete", locationId="loc-1", id="hot-1")))
    assert not client.exists("lf:{loc-1:hot-1}:own")


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


def test_own_message_ids_and_appointments_work_in_cluster_mode(cluster_url: str) -> None:
    from leadflow import own_messages, redis_client
    from leadflow.lead_state import APPOINTMENT, LeadStore

    try:
        store = redis_client.cache()
        own_messages.remember(store, "loc-1", "lead-0", ("m-1", "e-1"), time.time())
        assert own_messages.any_own(store, "loc-1", "lead-0", ("other", "e-1"))
        assert not own_messages.any_own(store, "loc-1", "lead-0", ("other",))
        leads = LeadStore(store)
        booked = leads.record("loc-1", "lead-0", fields={APPOINTMENT + "a": "1", APPOINTMENT + "b": "1"})
        assert booked.state.appointments == {"a", "b"}
        lifted = leads.record("loc-1", "lead-0", fields={APPOINTMENT + "a": ""})
        assert lifted.state.appointments == {"b"}
    finally:
        redis_client.cache().close()
