"""GHL marketplace webhooks into lead actions, from GHL's documented payloads (tests/events/ghl/).

Where the contact id lives: `id` in contact events, the top-level `contactId` in message and
opportunity events, `appointment.contactId` in appointment events (the appointment's own id is
`appointment.id`). Route by `type`, never by `direction`. A `webhookId` de-duplicates a delivery;
without one, the hash of the body bytes does.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from leadflow.config import Settings
from leadflow.intake.events import (
    WINDOW_SECONDS,
    Action,
    AppEvent,
    Malformed,
    Parsed,
    contact_profile,
    dnd_channels,
    epoch,
    identifier,
    text,
)
from leadflow.intake.verify import SignatureError
from leadflow.lead import CLOSED_OUTCOMES
from leadflow.lead_state import APPOINTMENT
from leadflow.signals import Signal

# Keywords carriers and GHL treat as an opt-out or opt-in when they are the whole message.
STOP_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"})
START_WORDS = frozenset({"START", "UNSTOP", "YES"})
_PUNCTUATION = re.compile(r"[\s.!]+$")

# InboundMessage channels (messageType, any casing) and the signal a reply on them gives.
REPLY_SIGNALS = {
    "sms": Signal.SMS_RESPONSE,
    "email": Signal.EMAIL_OPEN,  # a reply is the email channel's strongest engagement on record
    "call": Signal.AGENT_INQUIRY,  # the lead phoned the team
    "voicemail": Signal.AGENT_INQUIRY,
    "whatsapp": Signal.SMS_RESPONSE,
    "gmb": Signal.SMS_RESPONSE,
    "fb": Signal.SMS_RESPONSE,
    "ig": Signal.SMS_RESPONSE,
    "live_chat": Signal.SMS_RESPONSE,
    "live chat": Signal.SMS_RESPONSE,
    "webchat": Signal.SMS_RESPONSE,
}
PLAIN_TEXT = frozenset({"sms", "whatsapp", "gmb", "fb", "ig", "live_chat", "live chat", "webchat"})
FORM_SOURCES = ("form", "survey", "funnel", "chat widget", "chat_widget")
# Appointment statuses (GHL's: new, confirmed, cancelled, showed, noshow, invalid) after which the
# lead has no appointment to wait for; any other status keeps it booked.
NOT_BOOKED = frozenset({"cancelled", "canceled", "invalid", "noshow"})


def dedupe_id(payload: Mapping[str, Any], body: bytes) -> str:
    webhook_id = text(payload.get("webhookId"), 1024)
    if webhook_id and len(webhook_id) > 128:  # never cut short, where it could match another
        webhook_id = "sha256:" + hashlib.sha256(webhook_id.encode()).hexdigest()[:40]
    return f"ghl:{webhook_id}" if webhook_id else "ghl:" + hashlib.sha256(body).hexdigest()[:40]


# GHL retries a delivery only after a 429, with the same signed payload, about every 10 minutes up
# to 6 times: a timestamp up to 2 hours old is accepted (de-duplication markers outlive that by far).
GHL_MAX_AGE_SECONDS = 2 * 3600


def check_timestamp(payload: Mapping[str, Any], now: float) -> float | None:
    """The signed `timestamp` (`...Z` or `+00:00`); over 2 hours old or 5 minutes ahead is a 401."""
    raw = payload.get("timestamp")
    if raw is None:
        return None  # accepted: the signature holds
    at = epoch(raw)
    if at is None:
        raise Malformed("timestamp is not an ISO 8601 time")
    if now - at > GHL_MAX_AGE_SECONDS:
        raise SignatureError("timestamp is more than 2 hours old")
    if at - now > WINDOW_SECONDS:
        raise SignatureError("timestamp is more than 5 minutes ahead")
    return at


def keyword(body: str) -> str:
    return _PUNCTUATION.sub("", body.strip()).upper()


def _contact(event_type: str, payload: Mapping[str, Any], location: str, **kw: Any) -> Action:
    contact = identifier(payload.get("id"), "id")
    if not contact:
        raise Malformed(f"id is required in {event_type}")
    return Action(event_type, location, contact, **kw)


def _contact_event(event_type: str, payload: Mapping[str, Any], location: str, at: float, event_id: str) -> Action:
    profile = contact_profile(payload, first_name="firstName", phone="phone", email="email", name="name")
    if payload.get("dnd") is True:  # `dnd: true` blocks every channel; false lifts nothing by itself
        profile["dnd"] = True
    channels = dnd_channels(payload.get("dndSettings"))
    if channels is not None:
        profile["dnd_channels"] = channels
    signal = Signal.AGENT_INQUIRY if event_type == "ContactCreate" and _from_form(payload) else None
    return _contact(
        event_type,
        payload,
        location,
        signal=signal,
        at=at,
        profile=profile,
        event_id=event_id,
        lookup_timezone="timezone" not in profile,
    )


def _from_form(payload: Mapping[str, Any]) -> bool:
    attribution = payload.get("attributionSource")
    sources = [payload.get("source")]
    if isinstance(attribution, dict):
        sources += [attribution.get("medium"), attribution.get("sessionSource")]
    return any(isinstance(s, str) and any(word in s.lower() for word in FORM_SOURCES) for s in sources)


def _dnd_update(event_type: str, payload: Mapping[str, Any], location: str, at: float, event_id: str) -> Action:
    # GHL: an absent global `dnd` means false; each channel's own status decides otherwise.
    profile: dict[str, Any] = {"dnd": payload.get("dnd") is True}
    channels = dnd_channels(payload.get("dndSettings"))
    if channels is not None:
        profile["dnd_channels"] = channels
    return _contact(event_type, payload, location, at=at, profile=profile, event_id=event_id)


def _inbound(
    event_type: str, payload: Mapping[str, Any], location: str, at: float, event_id: str, config: Settings
) -> Action | None:
    contact = identifier(payload.get("contactId"), "contactId")
    if not contact:
        raise Malformed("contactId is required in InboundMessage")
    channel = (text(payload.get("messageType"), 40) or "").lower()
    signal = REPLY_SIGNALS.get(channel)
    if signal is None:
        return None
    body = payload.get("body")
    word = keyword(body) if channel in PLAIN_TEXT and isinstance(body, str) else ""
    if word in STOP_WORDS:
        return Action(event_type, location, contact, at=at, profile={"opted_out": True}, event_id=event_id)
    # START lifts only what STOP set: a DND that GHL set changes only with GHL's own contact events.
    profile: dict[str, Any] = {"opted_out": False} if word in START_WORDS else {}
    # A reply pauses automated follow-up so an agent can take over (stop-on-reply).
    pause = at + config.stop_on_reply_hours * 3600
    return Action(
        event_type, location, contact, signal=signal, at=at, profile=profile, event_id=event_id, pause_at_least=pause
    )


def _outbound(
    event_type: str, payload: Mapping[str, Any], location: str, at: float, event_id: str, config: Settings
) -> Action | None:
    # A message that names its user was sent by a person: an agent has taken the conversation over,
    # so automated follow-up pauses as after a reply. Automated, workflow and bulk sends name none.
    if not text(payload.get("userId")):
        return None
    contact = identifier(payload.get("contactId"), "contactId")
    if not contact:
        raise Malformed("contactId is required in OutboundMessage")
    # leadflow's own messages are known by the ids GHL returned for them (an email's webhook names
    # its emailMessageId); service checks them, since parsing never touches Redis.
    ids = tuple(i for i in (text(payload.get("messageId"), 256), text(payload.get("emailMessageId"), 256)) if i)
    pause = at + config.stop_on_reply_hours * 3600
    return Action(event_type, location, contact, at=at, event_id=event_id, pause_at_least=pause, unless_own_message=ids)


def _appointment(event_type: str, payload: Mapping[str, Any], location: str, at: float, event_id: str) -> Action | None:
    appointment = payload.get("appointment")
    if not isinstance(appointment, dict):
        raise Malformed(f"appointment is required in {event_type}")
    contact = identifier(appointment.get("contactId"), "appointment.contactId")
    if not contact:
        raise Malformed(f"appointment.contactId is required in {event_type}")
    status = (text(appointment.get("appointmentStatus"), 40) or "").lower()
    booked = event_type != "AppointmentDelete" and status not in NOT_BOOKED
    if event_type == "AppointmentCreate" and not booked:
        return None
    appointment_id = identifier(appointment.get("id"), "appointment.id")
    if appointment_id is None and not booked:
        raise Malformed(f"appointment.id is required in {event_type}")
    # While booked, an appointment pauses automated follow-up: its own field, so that cancelling it
    # lifts that pause alone (never a reply's, an opt-out, a closed opportunity or another booking).
    # Booked without an id (never in GHL's payloads), it still pauses, and nothing lifts it.
    guard = {APPOINTMENT + (appointment_id or ""): "1" if booked else ""}
    signal = Signal.AGENT_INQUIRY if event_type == "AppointmentCreate" else None  # booking is an inquiry
    return Action(event_type, location, contact, signal=signal, at=at, guard=guard, event_id=event_id)


def _opportunity(event_type: str, payload: Mapping[str, Any], location: str, at: float, event_id: str) -> Action | None:
    status = (text(payload.get("status"), 40) or "").lower()
    if status not in CLOSED_OUTCOMES:  # won, lost, abandoned: automated follow-up stops for good
        return None
    contact = identifier(payload.get("contactId"), "contactId")
    if not contact:
        raise Malformed("contactId is required in OpportunityStatusUpdate")
    return Action(event_type, location, contact, at=at, guard={"g:outcome": status}, event_id=event_id)


def _delete(event_type: str, payload: Mapping[str, Any], location: str, at: float, event_id: str) -> Action:
    return _contact(event_type, payload, location, at=at, erase=True, event_id=event_id)


APP_EVENTS = ("INSTALL", "UNINSTALL")  # the marketplace app itself, not a lead

Mapper = Callable[[str, Mapping[str, Any], str, float, str], Action | None]
MAPPERS: dict[str, Mapper] = {
    "ContactCreate": _contact_event,
    "ContactUpdate": _contact_event,
    "ContactDndUpdate": _dnd_update,
    "AppointmentCreate": _appointment,
    "AppointmentUpdate": _appointment,
    "AppointmentDelete": _appointment,
    "OpportunityStatusUpdate": _opportunity,
    "ContactDelete": _delete,
}


def parse(
    payload: Any, body: bytes, *, now: float, received_at: float, location_hint: str, config: Settings, replay: bool
) -> Parsed:
    """A verified GHL body into at most one action. Replays skip the time window (checked on receipt)."""
    if not isinstance(payload, dict):
        raise Malformed("body must be a JSON object")
    event_type = text(payload.get("type"), 64) or "unknown"
    if event_type in APP_EVENTS:
        app = AppEvent(
            event_type,
            identifier(payload.get("locationId"), "locationId"),
            identifier(payload.get("companyId"), "companyId"),
        )
        return Parsed(event_type, app=app if app.location_id or app.company_id else None)
    at = check_timestamp(payload, now) if not replay else epoch(payload.get("timestamp"))
    at = received_at if at is None or not math.isfinite(at) else at
    named = identifier(payload.get("locationId"), "locationId")
    location = named or location_hint
    event_id = dedupe_id(payload, body)
    action: Action | None
    if event_type == "InboundMessage":
        action = _inbound(event_type, payload, location, at, event_id, config)
    elif event_type == "OutboundMessage":
        action = _outbound(event_type, payload, location, at, event_id, config)
    elif event_type in MAPPERS:
        action = MAPPERS[event_type](event_type, payload, location, at, event_id)
    else:
        action = None
    return Parsed(event_type, [action] if action is not None and action.useful else [], hinted=not named)
