"""POST /webhooks/ghl over real Function URL events: signatures, the time window, de-duplication,
and what each of GHL's documented events does to the lead (fixtures in tests/events/ghl/)."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest
import respx

from tests.helpers import raw_redis
from tests.integration.test_webhook_support import (
    Intake,
    ghl_body,
    ghl_event,
    intake_fixture,  # noqa: F401  (the `intake` fixture)
    lead,
    public_pem,
    public_spki_base64,
    rsa_private,
    sign_ed25519,
)

CONTACT = "nmFmQEsNgz6AVpgLVUJ0"
CONTACT_LOCATION = "ve9EPM428h8vShlRW1KT"
YEAR = 365 * 86_400


# --- signatures and the window -------------------------------------------------------------------


def test_ed25519_signed_contact_create_is_accepted(intake: Intake) -> None:
    assert intake(ghl_event(ghl_body("contact_create"))) == (200, {"status": "accepted"})


def test_a_body_changed_after_signing_is_unauthorized(intake: Intake) -> None:
    body = ghl_body("contact_create")
    event = ghl_event(body)
    event["body"] = event["body"].replace("John", "Jon")
    status, _ = intake(event)
    assert status == 401


def test_a_missing_signature_is_unauthorized(intake: Intake) -> None:
    status, reply = intake(ghl_event(ghl_body("contact_create"), signature=None))
    assert status == 401
    assert "signature" in reply["message"]


def test_a_signature_from_another_key_is_unauthorized(intake: Intake) -> None:
    from cryptography.hazmat.primitives.asymmetric import ed25519

    body = ghl_body("contact_create")
    event = ghl_event(body, signature=None)
    event["headers"]["x-ghl-signature"] = sign_ed25519(body, ed25519.Ed25519PrivateKey.generate())
    assert intake(event)[0] == 401


def test_the_key_may_be_given_as_ghl_publishes_it_base64_spki(intake: Intake, monkeypatch: pytest.MonkeyPatch) -> None:
    from leadflow.config import settings
    from tests.integration.test_webhook_support import ed25519_private

    monkeypatch.setenv("GHL_WEBHOOK_PUBLIC_KEY", public_spki_base64(ed25519_private()))
    settings.cache_clear()
    assert intake(ghl_event(ghl_body("contact_create")))[0] == 200


def test_base64_encoded_bodies_are_decoded_before_verifying(intake: Intake) -> None:
    assert intake(ghl_event(ghl_body("contact_create"), base64_body=True)) == (200, {"status": "accepted"})


def test_legacy_rsa_signature_is_ignored_without_its_key(intake: Intake) -> None:
    assert intake(ghl_event(ghl_body("contact_create"), signature="rsa"))[0] == 401


def test_legacy_rsa_signature_is_checked_when_its_key_is_set(intake: Intake, monkeypatch: pytest.MonkeyPatch) -> None:
    from leadflow.config import settings

    monkeypatch.setenv("GHL_WEBHOOK_RSA_PUBLIC_KEY", public_pem(rsa_private()))
    settings.cache_clear()
    body = ghl_body("contact_create")
    assert intake(ghl_event(body, signature="rsa")) == (200, {"status": "accepted"})
    tampered = ghl_event(body, signature="rsa")
    tampered["body"] = tampered["body"].replace("FL", "GA")
    assert intake(tampered)[0] == 401


def test_a_ghl_retry_up_to_two_hours_old_is_accepted(intake: Intake) -> None:
    # GHL retries a delivery after a 429 about every 10 minutes, the same signed payload, up to 6 times
    assert intake(ghl_event(ghl_body("contact_create", at=time.time() - 110 * 60))) == (200, {"status": "accepted"})
    assert lead(CONTACT, CONTACT_LOCATION) is not None


def test_a_timestamp_more_than_two_hours_old_is_unauthorized(intake: Intake) -> None:
    status, reply = intake(ghl_event(ghl_body("contact_create", at=time.time() - 2 * 3600 - 1)))
    assert status == 401
    assert "2 hours" in reply["message"]
    assert lead(CONTACT, CONTACT_LOCATION) is None


def test_a_timestamp_more_than_five_minutes_ahead_is_unauthorized(intake: Intake) -> None:
    assert intake(ghl_event(ghl_body("contact_create", at=time.time() + 301)))[0] == 401


def test_a_plus_zero_offset_timestamp_is_accepted(intake: Intake) -> None:
    body = ghl_body("contact_create")
    payload = json.loads(body)
    payload["timestamp"] = payload["timestamp"].replace("Z", "+00:00")
    assert intake(ghl_event(json.dumps(payload).encode()))[0] == 200


def test_a_body_without_timestamp_is_accepted(intake: Intake) -> None:
    assert intake(ghl_event(ghl_body("contact_create", timestamp=None)))[0] == 200


# --- de-duplication ------------------------------------------------------------------------------


def test_a_redelivered_webhook_id_is_a_duplicate_and_changes_nothing(intake: Intake) -> None:
    body = ghl_body("inbound_message_sms")
    assert intake(ghl_event(body)) == (200, {"status": "accepted"})
    before = lead("cI08i1Bls3iTB9bKgFJh", "l1C08ntBrFjLS0elLIYU")
    assert intake(ghl_event(body)) == (200, {"status": "duplicate"})
    after = lead("cI08i1Bls3iTB9bKgFJh", "l1C08ntBrFjLS0elLIYU")
    assert after.signals == before.signals


def test_a_body_without_webhook_id_is_deduplicated_by_its_bytes(intake: Intake) -> None:
    body = ghl_body("inbound_message_sms", webhookId=None)
    assert intake(ghl_event(body))[1] == {"status": "accepted"}
    assert intake(ghl_event(body))[1] == {"status": "duplicate"}


# --- what each event does ------------------------------------------------------------------------


def test_contact_create_keeps_a_profile_without_the_phone_number(intake: Intake) -> None:
    intake(ghl_event(ghl_body("contact_create")))
    stored = lead(CONTACT, CONTACT_LOCATION)
    profile = stored.profile
    assert (profile.first_name, profile.state, profile.area_code) == ("John", "FL", "813")
    assert profile.has_phone
    assert profile.has_email
    assert not profile.dnd

    from leadflow.config import settings

    raw = raw_redis(settings().redis_url).hgetall(f"lf:{{{CONTACT_LOCATION}:{CONTACT}}}:lead")
    assert b"8135550142" not in b"".join(raw.values())


def test_a_new_contact_from_a_form_counts_as_an_agent_inquiry(intake: Intake) -> None:
    from leadflow.signals import Signal

    intake(ghl_event(ghl_body("contact_create")))
    assert lead(CONTACT, CONTACT_LOCATION).signals[Signal.AGENT_INQUIRY].count == 1


def test_a_contact_entered_by_hand_is_no_inquiry(intake: Intake) -> None:
    body = ghl_body(
        "contact_create", source="manual", attributionSource={"medium": "manual", "sessionSource": "CRM UI"}
    )
    intake(ghl_event(body))
    assert lead(CONTACT, CONTACT_LOCATION).signals == {}


def test_an_email_address_that_is_malformed_never_rejects_the_event(intake: Intake) -> None:
    assert intake(ghl_event(ghl_body("contact_create", email="not an email@@")))[0] == 200


def test_contact_update_with_dnd_true_opts_the_lead_out(intake: Intake) -> None:
    intake(ghl_event(ghl_body("contact_update")))
    stored = lead(CONTACT, CONTACT_LOCATION)
    assert stored.profile.dnd
    assert not stored.profile.can_reach("sms")
    assert stored.profile.area_code is None  # an Indian number has no North American area code


def test_contact_dnd_update_blocks_channel_by_channel(intake: Intake) -> None:
    intake(ghl_event(ghl_body("contact_dnd_update")))
    profile = lead(CONTACT, CONTACT_LOCATION).profile
    assert not profile.dnd
    assert profile.dnd_channels == frozenset({"email"})
    assert profile.can_reach("sms")
    assert not profile.can_reach("email")


def test_contact_dnd_update_with_dnd_true_blocks_every_channel(intake: Intake) -> None:
    intake(ghl_event(ghl_body("contact_dnd_update", dnd=True)))
    profile = lead(CONTACT, CONTACT_LOCATION).profile
    assert profile.dnd
    assert not profile.can_reach("sms")


def test_contact_dnd_update_lifting_everything_opts_back_in(intake: Intake) -> None:
    intake(ghl_event(ghl_body("contact_update")))
    lifted = {name: {"status": "inactive", "message": "", "code": ""} for name in ("SMS", "Email", "Call")}
    intake(ghl_event(ghl_body("contact_dnd_update", dnd=None, dndSettings=lifted, webhookId="lift-1")))
    profile = lead(CONTACT, CONTACT_LOCATION).profile
    assert not profile.dnd
    assert profile.dnd_channels == frozenset()


def test_an_sms_reply_is_a_response_and_pauses_follow_up(intake: Intake) -> None:
    from leadflow.config import settings
    from leadflow.signals import Signal

    before = time.time()
    intake(ghl_event(ghl_body("inbound_message_sms")))
    stored = lead("cI08i1Bls3iTB9bKgFJh", "l1C08ntBrFjLS0elLIYU")
    assert stored.signals[Signal.SMS_RESPONSE].count == 1
    hours = settings().stop_on_reply_hours
    assert before + hours * 3600 - 5 <= stored.paused_until <= time.time() + hours * 3600 + 5


def test_an_email_reply_is_email_engagement_and_pauses_follow_up(intake: Intake) -> None:
    from leadflow.signals import Signal

    intake(ghl_event(ghl_body("inbound_message_email")))
    stored = lead("cI08i1Bls3iTB9bKgFJh", "l1C08ntBrFjLS0elLIYU")
    assert stored.signals[Signal.EMAIL_OPEN].count == 1
    assert stored.paused_until > time.time()


def test_an_inbound_call_is_an_agent_inquiry(intake: Intake) -> None:
    from leadflow.signals import Signal

    intake(ghl_event(ghl_body("inbound_message_call")))
    assert Signal.AGENT_INQUIRY in lead("cI08i1Bls3iTB9bKgFJh", "l1C08ntBrFjLS0elLIYU").signals


@pytest.mark.parametrize(
    "body", ["STOP", "  stop ", "Unsubscribe", "STOPALL", "end", "Quit", "cancel", "REVOKE", "optout"]
)
def test_stop_family_replies_opt_the_lead_out(intake: Intake, body: str) -> None:
    intake(ghl_event(ghl_body("inbound_message_sms", body=body)))
    stored = lead("cI08i1Bls3iTB9bKgFJh", "l1C08ntBrFjLS0elLIYU")
    assert stored.profile.opted_out
    assert not stored.profile.can_reach("sms")
    assert stored.signals == {}


def test_a_sentence_containing_stop_is_an_ordinary_reply(intake: Intake) -> None:
    intake(ghl_event(ghl_body("inbound_message_sms", body="Please don't stop sending listings")))
    assert not lead("cI08i1Bls3iTB9bKgFJh", "l1C08ntBrFjLS0elLIYU").profile.opted_out


@pytest.mark.parametrize("word", ["START", "unstop", "Yes"])
def test_start_unstop_or_yes_opts_the_lead_back_in(intake: Intake, word: str) -> None:
    intake(ghl_event(ghl_body("inbound_message_sms", body="STOP", webhookId="stop-1")))
    intake(ghl_event(ghl_body("inbound_message_sms", body=word, webhookId="start-1")))
    profile = lead("cI08i1Bls3iTB9bKgFJh", "l1C08ntBrFjLS0elLIYU").profile
    assert not profile.opted_out
    assert profile.can_reach("sms")


def test_a_reply_never_lifts_an_appointments_pause(intake: Intake) -> None:
    intake(ghl_event(ghl_body("appointment_create", locationId="l1C08ntBrFjLS0elLIYU")))
    intake(ghl_event(ghl_body("inbound_message_sms", contactId="9NkT25Vor1v4aQatFsv2")))
    assert lead("9NkT25Vor1v4aQatFsv2", "l1C08ntBrFjLS0elLIYU").paused(time.time() + 10 * YEAR)


def test_an_appointment_is_an_agent_inquiry_and_stops_follow_up_while_booked(intake: Intake) -> None:
    from leadflow.signals import Signal

    intake(ghl_event(ghl_body("appointment_create")))
    stored = lead("9NkT25Vor1v4aQatFsv2", "0007BWpSzSwfiuSl0tR2")
    assert stored.signals[Signal.AGENT_INQUIRY].count == 1
    assert stored.appointments == {"0007BWpSzSwfiuSl0tR2"}
    assert stored.paused(time.time() + 10 * YEAR)


@pytest.mark.parametrize("outcome", ["won", "lost"])
def test_a_won_or_lost_opportunity_stops_follow_up_and_records_the_outcome(intake: Intake, outcome: str) -> None:
    intake(ghl_event(ghl_body("opportunity_status_update", status=outcome)))
    stored = lead("cJAWDskpkJHbRbhAT7bs", CONTACT_LOCATION)
    assert stored.outcome == outcome
    assert stored.paused(time.time() + 10 * YEAR)


def test_an_opportunity_still_open_is_ignored(intake: Intake) -> None:
    assert intake(ghl_event(ghl_body("opportunity_status_update", status="open")))[1] == {"status": "ignored"}


def test_contact_delete_erases_the_lead(intake: Intake) -> None:
    intake(ghl_event(ghl_body("contact_create")))
    assert lead(CONTACT, CONTACT_LOCATION) is not None
    assert intake(ghl_event(ghl_body("contact_delete")))[1] == {"status": "accepted"}
    assert lead(CONTACT, CONTACT_LOCATION) is None


def test_other_event_types_are_ignored(intake: Intake) -> None:
    assert intake(ghl_event(ghl_body("note_create"))) == (200, {"status": "ignored"})


# --- timezone ------------------------------------------------------------------------------------


def test_a_timezone_in_the_payload_is_kept(intake: Intake) -> None:
    intake(ghl_event(ghl_body("contact_create", timezone="America/Chicago")))
    assert lead(CONTACT, CONTACT_LOCATION).profile.timezone == "America/Chicago"


@respx.mock
def test_without_a_timezone_the_contact_api_gives_it(intake: Intake, monkeypatch: pytest.MonkeyPatch) -> None:
    from leadflow.config import settings

    monkeypatch.setenv("GHL_API_KEY", "pit-test-token")
    settings.cache_clear()
    route = respx.get(f"https://services.leadconnectorhq.com/contacts/{CONTACT}").mock(
        return_value=httpx.Response(200, json={"contact": {"id": CONTACT, "timezone": "America/Denver"}})
    )
    intake(ghl_event(ghl_body("contact_create")))
    assert lead(CONTACT, CONTACT_LOCATION).profile.timezone == "America/Denver"
    request = route.calls.last.request
    assert request.headers["Version"] == "2021-07-28"
    assert request.headers["Authorization"] == "Bearer pit-test-token"


@respx.mock
def test_without_a_contact_timezone_the_locations_is_used(intake: Intake, monkeypatch: pytest.MonkeyPatch) -> None:
    from leadflow.config import settings

    monkeypatch.setenv("GHL_API_KEY", "pit-test-token")
    settings.cache_clear()
    respx.get(f"https://services.leadconnectorhq.com/contacts/{CONTACT}").mock(
        return_value=httpx.Response(200, json={"contact": {"id": CONTACT}})
    )
    route = respx.get(f"https://services.leadconnectorhq.com/locations/{CONTACT_LOCATION}").mock(
        return_value=httpx.Response(200, json={"location": {"id": CONTACT_LOCATION, "timezone": "America/Phoenix"}})
    )
    intake(ghl_event(ghl_body("contact_create")))
    assert lead(CONTACT, CONTACT_LOCATION).profile.timezone == "America/Phoenix"
    assert route.calls.last.request.headers["Version"] == "2021-07-28"


@respx.mock
def test_a_failing_contact_api_falls_back_quietly(intake: Intake, monkeypatch: pytest.MonkeyPatch) -> None:
    from leadflow.config import settings

    monkeypatch.setenv("GHL_API_KEY", "pit-test-token")
    settings.cache_clear()
    respx.get(f"https://services.leadconnectorhq.com/contacts/{CONTACT}").mock(side_effect=httpx.ConnectTimeout("slow"))
    assert intake(ghl_event(ghl_body("contact_create")))[0] == 200
    assert lead(CONTACT, CONTACT_LOCATION).profile.timezone is None


# --- bad input -----------------------------------------------------------------------------------


def test_malformed_json_is_a_bad_request(intake: Intake) -> None:
    assert intake(ghl_event(b'{"type": "ContactCreate",'))[0] == 400


def test_a_json_array_is_a_bad_request(intake: Intake) -> None:
    assert intake(ghl_event(b"[1, 2, 3]"))[0] == 400


def test_a_body_over_256_kib_is_too_large(intake: Intake) -> None:
    payload: dict[str, Any] = json.loads(ghl_body("note_create"))
    payload["body"] = "x" * (256 * 1024)
    assert intake(ghl_event(json.dumps(payload).encode()))[0] == 413


def test_an_unknown_path_is_not_found_and_get_is_not_allowed(intake: Intake) -> None:
    from tests.integration.test_webhook_support import function_url_event

    assert intake(function_url_event("/webhooks/nope", b"{}"))[0] == 404
    assert intake(function_url_event("/webhooks/ghl", b"", method="GET"))[0] == 405


def test_a_doubled_or_trailing_slash_still_reaches_the_route(intake: Intake) -> None:
    body = ghl_body("contact_create")
    for path in ("//webhooks/ghl", "/webhooks/ghl/"):
        event = ghl_event(body)
        event["rawPath"] = path
        assert intake(event)[0] == 200
