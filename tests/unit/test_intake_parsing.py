"""Pure intake pieces: signature checks with keys generated here, GHL mapping, keywords, profiles."""

from __future__ import annotations

import base64
import json
import time

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from leadflow.config import GHL_PUBLISHED_ED25519_KEY, Settings
from leadflow.errors import InvalidInput
from leadflow.intake import activity, ghl, workflow
from leadflow.intake.events import Malformed, area_code, dnd_channels, epoch
from leadflow.intake.spill import Delivery
from leadflow.intake.verify import SignatureError, ed25519_key, verify_bearer, verify_ghl
from leadflow.lead_state import APPOINTMENT
from leadflow.signals import Signal
from tests.helpers import load_event

NOW = 1_795_442_700.0  # 2026-11-23T14:05:00Z


def pem(key: ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey) -> str:
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return public.decode()


@pytest.fixture(scope="module")
def ed_key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


def parse_ghl(name: str, **changes: object) -> ghl.Parsed:
    payload = load_event(f"ghl/{name}") | changes
    body = json.dumps(payload).encode()
    return ghl.parse(payload, body, now=NOW, received_at=NOW, location_hint="loc-1", config=Settings(), replay=False)


# --- verify --------------------------------------------------------------------------------------


def test_ghls_published_key_loads_as_ed25519() -> None:
    assert isinstance(ed25519_key(GHL_PUBLISHED_ED25519_KEY), ed25519.Ed25519PublicKey)


def test_an_ed25519_signature_over_the_raw_bytes_verifies(ed_key: ed25519.Ed25519PrivateKey) -> None:
    body = b'{"type":"ContactCreate"}'
    headers = {"x-ghl-signature": base64.b64encode(ed_key.sign(body)).decode()}
    assert verify_ghl(body, headers, pem(ed_key), None) == "x-ghl-signature"


def test_a_reserialized_body_does_not_verify(ed_key: ed25519.Ed25519PrivateKey) -> None:
    body = b'{"type": "ContactCreate"}'
    headers = {"x-ghl-signature": base64.b64encode(ed_key.sign(body)).decode()}
    with pytest.raises(SignatureError):
        verify_ghl(json.dumps(json.loads(body), separators=(",", ":")).encode(), headers, pem(ed_key), None)


def test_ed25519_is_checked_first_even_when_an_rsa_signature_is_also_sent(ed_key: ed25519.Ed25519PrivateKey) -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    body = b"{}"
    headers = {
        "x-ghl-signature": base64.b64encode(b"\0" * 64).decode(),
        "x-wh-signature": base64.b64encode(rsa_key.sign(body, padding.PKCS1v15(), hashes.SHA256())).decode(),
    }
    with pytest.raises(SignatureError):
        verify_ghl(body, headers, pem(ed_key), pem(rsa_key))


def test_a_signature_that_is_not_base64_is_rejected(ed_key: ed25519.Ed25519PrivateKey) -> None:
    with pytest.raises(SignatureError):
        verify_ghl(b"{}", {"x-ghl-signature": "%%%"}, pem(ed_key), None)


def test_bearer_tokens_compare_whole_and_case_sensitively() -> None:
    verify_bearer({"authorization": "Bearer s3cret"}, "s3cret")
    for given in ("Bearer S3CRET", "Bearer s3cre", "Basic s3cret", ""):
        with pytest.raises(SignatureError):
            verify_bearer({"authorization": given}, "s3cret")


# --- GHL mapping ---------------------------------------------------------------------------------


def test_the_contact_id_comes_from_where_each_event_keeps_it() -> None:
    assert parse_ghl("contact_create", timestamp=None).actions[0].contact_id == "nmFmQEsNgz6AVpgLVUJ0"
    assert parse_ghl("inbound_message_sms", timestamp=None).actions[0].contact_id == "cI08i1Bls3iTB9bKgFJh"
    assert parse_ghl("appointment_create", timestamp=None).actions[0].contact_id == "9NkT25Vor1v4aQatFsv2"
    assert parse_ghl("opportunity_status_update", timestamp=None).actions[0].contact_id == "cJAWDskpkJHbRbhAT7bs"


def test_events_route_by_type_not_direction() -> None:
    action = parse_ghl("inbound_message_email", timestamp=None).actions[0]  # its example says "outbound"
    assert action.signal is Signal.EMAIL_OPEN


def test_message_type_casing_does_not_matter() -> None:
    assert parse_ghl("inbound_message_sms", timestamp=None, messageType="sms").actions[0].signal is Signal.SMS_RESPONSE


def test_a_voicemail_without_a_body_is_still_an_inquiry() -> None:
    parsed = parse_ghl("inbound_message_call", timestamp=None, messageType="VoiceMail")
    assert parsed.actions[0].signal is Signal.AGENT_INQUIRY


def test_html_email_bodies_are_not_read_as_keywords() -> None:
    action = parse_ghl("inbound_message_email", timestamp=None, body="<p>STOP</p>").actions[0]
    assert "dnd" not in action.profile


def test_the_webhook_id_deduplicates_and_without_it_the_body_hash_does() -> None:
    assert parse_ghl("note_create").event_type == "NoteCreate"
    payload = load_event("ghl/contact_create")
    assert ghl.dedupe_id(payload, b"x") == "ghl:dfffb990-4b0a-4411-8ba4-995e3f0f313f"
    del payload["webhookId"]
    assert ghl.dedupe_id(payload, b"x") != ghl.dedupe_id(payload, b"y")


def test_ghl_timestamps_over_two_hours_old_or_five_minutes_ahead_are_signature_errors() -> None:
    # now is 2026-11-23T14:05:00Z
    with pytest.raises(SignatureError):
        parse_ghl("contact_create", timestamp="2026-11-23T12:04:59Z")
    with pytest.raises(SignatureError):
        parse_ghl("contact_create", timestamp="2026-11-23T14:10:01Z")
    assert parse_ghl("contact_create", timestamp="2026-11-23T12:05:01Z").actions
    assert parse_ghl("contact_create", timestamp="2026-11-23T14:09:59+00:00").actions


def test_a_timestamp_that_is_not_a_time_is_malformed() -> None:
    with pytest.raises(Malformed):
        parse_ghl("contact_create", timestamp="soon")


def test_replays_skip_the_window() -> None:
    payload = load_event("ghl/contact_create")
    parsed = ghl.parse(
        payload, b"{}", now=NOW + 86_400, received_at=NOW, location_hint="l", config=Settings(), replay=True
    )
    assert parsed.actions[0].at == epoch(payload["timestamp"])


@pytest.mark.parametrize("text", ["STOP", " stop\n", "Stop.", "UNSUBSCRIBE!", "optout", "StopAll"])
def test_stop_keywords_are_recognised_in_any_case_with_spaces(text: str) -> None:
    assert ghl.keyword(text) in ghl.STOP_WORDS


def test_reply_pause_uses_stop_on_reply_hours() -> None:
    config = Settings(stop_on_reply_hours=2)
    payload = load_event("ghl/inbound_message_sms") | {"timestamp": None}
    action = ghl.parse(payload, b"", now=NOW, received_at=NOW, location_hint="l", config=config, replay=False).actions[
        0
    ]
    assert action.pause_at_least == NOW + 7200


# --- more GHL events: an agent taking over, appointments, abandoned opportunities ------------------

APPOINTMENT_FIELD = APPOINTMENT + "0007BWpSzSwfiuSl0tR2"


def test_an_agents_outbound_message_pauses_like_a_reply_unless_it_is_leadflows_own() -> None:
    payload = load_event("ghl/outbound_message_call") | {"timestamp": None}
    config = Settings(stop_on_reply_hours=2)
    [action] = ghl.parse(payload, b"", now=NOW, received_at=NOW, location_hint="l", config=config, replay=False).actions
    assert (action.location_id, action.contact_id) == ("0d48aEf7q67DAu134bpy", "gblakL5aYQC4glDtP1r2t3")
    assert action.pause_at_least == NOW + 7200
    assert action.unless_own_message == ("tyW42xCD0HQpb3hhfLcx",)
    assert (action.signal, dict(action.profile), dict(action.guard)) == (None, {}, {})  # no engagement by the lead


def test_an_agents_email_is_known_by_its_email_message_id() -> None:
    [action] = parse_ghl("outbound_message_email", timestamp=None, userId="u-1").actions
    assert action.unless_own_message == ("sddfDSF3G56GHG",)


@pytest.mark.parametrize("name", ["outbound_message_sms", "outbound_message_email"])
def test_an_outbound_message_without_a_user_is_an_automated_send_and_changes_nothing(name: str) -> None:
    parsed = parse_ghl(name, timestamp=None)
    assert (parsed.event_type, parsed.actions) == ("OutboundMessage", [])


def test_an_agents_outbound_message_without_a_contact_names_the_field() -> None:
    with pytest.raises(Malformed, match="contactId"):
        parse_ghl("outbound_message_call", timestamp=None, contactId=None)


def parse_appointment(name: str, **changes: object) -> ghl.Parsed:
    payload = load_event(f"ghl/{name}") | {"timestamp": None}
    payload["appointment"] = {k: v for k, v in (payload["appointment"] | changes).items() if v is not None}
    return ghl.parse(payload, b"", now=NOW, received_at=NOW, location_hint="l", config=Settings(), replay=False)


def test_a_booked_appointment_pauses_under_its_own_id_and_is_an_inquiry() -> None:
    [action] = parse_appointment("appointment_create").actions
    assert action.contact_id == "9NkT25Vor1v4aQatFsv2"
    assert dict(action.guard) == {APPOINTMENT_FIELD: "1"}
    assert action.signal is Signal.AGENT_INQUIRY
    assert action.pause_at_least is None


@pytest.mark.parametrize(
    ("name", "status"),
    [
        ("appointment_update", "cancelled"),
        ("appointment_update", "Invalid"),
        ("appointment_update", "noshow"),
        ("appointment_delete", "confirmed"),  # deleted, whatever its status said
    ],
)
def test_a_cancelled_invalid_noshow_or_deleted_appointment_lifts_only_its_own_pause(name: str, status: str) -> None:
    [action] = parse_appointment(name, appointmentStatus=status).actions
    assert dict(action.guard) == {APPOINTMENT_FIELD: ""}  # that appointment's field, nothing else
    assert (action.signal, dict(action.profile), action.pause_at_least) == (None, {}, None)


@pytest.mark.parametrize("status", ["new", "confirmed", "showed"])
def test_an_appointment_updated_as_booked_keeps_or_sets_its_pause(status: str) -> None:
    [action] = parse_appointment("appointment_update", appointmentStatus=status).actions
    assert dict(action.guard) == {APPOINTMENT_FIELD: "1"}
    assert action.signal is None  # only a new booking is an inquiry


def test_an_appointment_created_cancelled_books_nothing() -> None:
    assert parse_appointment("appointment_create", appointmentStatus="cancelled").actions == []


def test_lifting_an_appointment_needs_its_id_and_booking_one_without_it_still_pauses() -> None:
    with pytest.raises(Malformed, match=r"appointment\.id"):
        parse_appointment("appointment_delete", id=None)
    [action] = parse_appointment("appointment_create", id=None).actions
    assert dict(action.guard) == {APPOINTMENT: "1"}


def test_an_abandoned_opportunity_is_closed_like_a_lost_one() -> None:
    [action] = parse_ghl("opportunity_status_update", timestamp=None, status="abandoned").actions
    assert dict(action.guard) == {"g:outcome": "abandoned"}


# --- profile pieces ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("phone", "code"),
    [
        ("+18135550142", "813"),
        ("(305) 555-0199", "305"),
        ("1-407-555-0100", "407"),
        ("+919509597501", None),
        ("", None),
    ],
)
def test_area_code_of_north_american_numbers_only(phone: str, code: str | None) -> None:
    assert area_code(phone) == code


def test_dnd_settings_active_or_permanent_block_their_channel() -> None:
    settings = {
        "SMS": {"status": "permanent"},
        "Email": {"status": "inactive"},
        "Call": {"status": "active"},
        "WhatsApp": {"status": "active"},
    }
    assert dnd_channels(settings) == frozenset({"sms", "call"})
    assert dnd_channels(None) is None


def test_epoch_accepts_z_and_offsets_and_refuses_junk() -> None:
    assert epoch("2026-11-23T14:05:00Z") == epoch("2026-11-23T14:05:00+00:00") == NOW
    assert epoch("2026-11-23T14:05:00") == NOW
    assert epoch("tomorrow") is None
    assert epoch(17) is None


# --- activity and workflow -----------------------------------------------------------------------


def test_an_activity_batch_gives_each_event_its_own_dedupe_id() -> None:
    event = load_event("activity_event")
    parsed = activity.parse(
        {"events": [event, event | {"id": "e-9"}]}, webhook_id="msg_1", received_at=NOW, location_hint="l"
    )
    assert [a.event_id for a in parsed.actions] == ["wh:msg_1:0", "act:e-9"]


def test_an_activity_event_without_a_contact_names_the_field() -> None:
    with pytest.raises(InvalidInput, match=r"^contact_id"):
        activity.parse({"signal": "listing_view"}, webhook_id="m", received_at=NOW, location_hint="l")


def test_workflow_reads_contact_and_location_from_any_documented_place() -> None:
    for body in (
        {"contact_id": "c", "location": {"id": "L"}, "customData": {"signal": "email_open"}},
        {"contactId": "c", "locationId": "L", "signal": "email_open"},
        {"customData": {"contact_id": "c", "location_id": "L", "signal": "email_open"}},
    ):
        action = workflow.parse(body, event_id="wf", received_at=NOW, location_hint="default").actions[0]
        assert (action.contact_id, action.location_id, action.signal) == ("c", "L", Signal.EMAIL_OPEN)


def test_workflow_dedupe_ids_repeat_within_a_window_and_change_after() -> None:
    assert workflow.dedupe_id(b"{}", NOW) == workflow.dedupe_id(b"{}", NOW + 10)
    assert workflow.dedupe_id(b"{}", NOW) != workflow.dedupe_id(b"{}", NOW + 301)


def test_a_spilled_delivery_round_trips_even_with_binary_bodies() -> None:
    for body in (b'{"a": "caf\xc3\xa9"}', b"\xff\xfe"):
        delivery = Delivery("ghl", body, time.time(), "ghl:x", "loc-1")
        assert Delivery.from_json(delivery.to_json()) == delivery


def test_a_message_that_is_not_a_spilled_delivery_is_malformed() -> None:
    with pytest.raises(Malformed):
        Delivery.from_json('{"route": "ghl"}')
