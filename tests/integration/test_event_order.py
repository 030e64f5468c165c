"""Order by event time, not arrival; START lifts only what STOP set (the sending-safety contract),
over real signed GHL webhooks. GHL retries and intake-queue replays do arrive late and out of order."""

from __future__ import annotations

import time

from tests.integration.test_webhook_support import (
    Intake,
    ghl_body,
    ghl_event,
    intake_fixture,  # noqa: F401  (the `intake` fixture)
    lead,
)

SMS_CONTACT, SMS_LOCATION = "cI08i1Bls3iTB9bKgFJh", "l1C08ntBrFjLS0elLIYU"
CONTACT, LOCATION = "nmFmQEsNgz6AVpgLVUJ0", "ve9EPM428h8vShlRW1KT"
BLOCKED = {"status": "active", "message": "", "code": "101"}
ALLOWED = {"status": "inactive", "message": "", "code": "101"}


def reply_sms(intake: Intake, body: str, at: float, webhook_id: str) -> None:
    assert intake(ghl_event(ghl_body("inbound_message_sms", body=body, at=at, webhookId=webhook_id)))[0] == 200


def test_a_late_start_older_than_the_stop_leaves_the_lead_opted_out(intake: Intake) -> None:
    now = time.time()
    reply_sms(intake, "STOP", now - 60, "stop-1")
    reply_sms(intake, "START", now - 120, "start-late")  # delivered after the STOP, written before it
    assert lead(SMS_CONTACT, SMS_LOCATION).profile.opted_out


def test_a_late_stop_older_than_the_start_leaves_the_lead_opted_in(intake: Intake) -> None:
    now = time.time()
    reply_sms(intake, "START", now - 60, "start-1")
    reply_sms(intake, "STOP", now - 120, "stop-late")
    assert not lead(SMS_CONTACT, SMS_LOCATION).profile.opted_out


def test_an_older_contact_update_never_clears_a_newer_channel_dnd(intake: Intake) -> None:
    now = time.time()
    settings = {"SMS": BLOCKED, "Email": ALLOWED, "Call": ALLOWED}
    intake(ghl_event(ghl_body("contact_dnd_update", at=now - 60, dnd=False, dndSettings=settings, webhookId="d-1")))
    allowed = {"SMS": ALLOWED, "Email": ALLOWED, "Call": ALLOWED}
    intake(ghl_event(ghl_body("contact_update", at=now - 120, dnd=False, dndSettings=allowed, webhookId="u-late")))
    profile = lead(CONTACT, LOCATION).profile
    assert not profile.can_reach("sms")
    assert profile.can_reach("email")


def test_an_older_contact_dnd_update_never_lifts_a_newer_dnd(intake: Intake) -> None:
    now = time.time()
    intake(ghl_event(ghl_body("contact_dnd_update", at=now - 60, dnd=True, webhookId="d-new")))
    intake(ghl_event(ghl_body("contact_dnd_update", at=now - 120, dnd=False, webhookId="d-old")))
    assert lead(CONTACT, LOCATION).profile.dnd


def test_a_newer_contact_event_does_change_a_field(intake: Intake) -> None:
    now = time.time()
    intake(ghl_event(ghl_body("contact_dnd_update", at=now - 120, dnd=True, webhookId="d-old")))
    intake(ghl_event(ghl_body("contact_dnd_update", at=now - 60, dnd=False, webhookId="d-new")))
    assert not lead(CONTACT, LOCATION).profile.dnd


def test_an_older_event_never_overwrites_a_newer_timezone(intake: Intake) -> None:
    now = time.time()
    intake(ghl_event(ghl_body("contact_update", at=now - 60, timezone="America/Chicago", webhookId="tz-new")))
    intake(ghl_event(ghl_body("contact_update", at=now - 120, timezone="America/Denver", webhookId="tz-old")))
    assert lead(CONTACT, LOCATION).profile.timezone == "America/Chicago"


def test_yes_lifts_a_stop_but_never_a_dnd_that_ghl_set(intake: Intake) -> None:
    # Given a contact GHL holds on DND (every channel, and Email and Call on their own)
    now = time.time()
    settings = {"SMS": ALLOWED, "Email": BLOCKED, "Call": BLOCKED}
    body = ghl_body("contact_dnd_update", at=now - 300, dnd=True, dndSettings=settings, webhookId="d-1")
    intake(
        ghl_event(
            body.replace(CONTACT.encode(), SMS_CONTACT.encode()).replace(LOCATION.encode(), SMS_LOCATION.encode())
        )
    )
    reply_sms(intake, "STOP", now - 120, "stop-1")
    # When the lead texts "Yes!"
    reply_sms(intake, "Yes!", now - 60, "yes-1")
    # Then the STOP is lifted, GHL's DND is not: nothing is reachable
    profile = lead(SMS_CONTACT, SMS_LOCATION).profile
    assert not profile.opted_out
    assert profile.dnd
    assert profile.dnd_channels == frozenset({"email", "call"})
    assert not profile.can_reach("sms")
    assert not profile.can_reach("email")
