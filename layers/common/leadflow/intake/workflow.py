"""GHL workflow webhooks ("Webhook" and "Custom Webhook" actions), authenticated by a bearer token.

The standard action posts the contact's fields in snake_case (`contact_id`, `first_name`, `phone`,
`email`, `tags`, ...), `location` ({"id", ...}) and `customData` (the pairs the user adds, such as
`signal` and `occurred_at`); a custom one posts the body the user writes. The contact comes from
`contact_id` or `contactId`, the location from `location.id`, `location_id` or `locationId`, and
`signal` / `occurred_at` from the top level or `customData`. Without a signal the profile is updated
(an inquiry-free touch); a body carrying nothing leadflow uses is `ignored`. GHL does not give these
an id: a hash of the body, within the 5-minute window, de-duplicates them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from leadflow.errors import InvalidInput
from leadflow.intake.events import (
    WINDOW_SECONDS,
    Action,
    Malformed,
    Parsed,
    contact_profile,
    epoch,
    identifier,
)
from leadflow.signals import Signal

EVENT_TYPE = "workflow"
FUTURE_SKEW_SECONDS = 60


def dedupe_id(body: bytes, received_at: float) -> str:
    """The same body within the same 5-minute window is one delivery."""
    return f"wf:{hashlib.sha256(body).hexdigest()[:40]}:{int(received_at // WINDOW_SECONDS)}"


def _pick(payload: Mapping[str, Any], custom: Mapping[str, Any], key: str) -> Any:
    value = payload.get(key)
    return custom.get(key) if value is None or value == "" else value


def parse(payload: Any, *, event_id: str, received_at: float, location_hint: str) -> Parsed:
    if not isinstance(payload, dict):
        raise Malformed("body must be a JSON object")
    custom = payload.get("customData")
    custom = custom if isinstance(custom, dict) else {}
    location_obj = payload.get("location")
    named = (
        (identifier(location_obj.get("id"), "location.id") if isinstance(location_obj, dict) else None)
        or identifier(_pick(payload, custom, "location_id"), "location_id")
        or identifier(_pick(payload, custom, "locationId"), "locationId")
    )
    location = named or location_hint
    contact = identifier(_pick(payload, custom, "contact_id"), "contact_id") or identifier(
        _pick(payload, custom, "contactId"), "contactId"
    )
    raw_signal = _pick(payload, custom, "signal")
    signal: Signal | None = None
    if raw_signal is not None and raw_signal != "":
        try:
            signal = Signal(str(raw_signal).strip().lower())
        except ValueError:
            raise InvalidInput(f"signal must be one of {', '.join(s.value for s in Signal)}") from None
    at = received_at
    raw_at = _pick(payload, custom, "occurred_at")
    if raw_at is not None and raw_at != "":
        parsed_at = epoch(raw_at)
        if parsed_at is None:
            raise InvalidInput("occurred_at is not an ISO 8601 time")
        if parsed_at > received_at + FUTURE_SKEW_SECONDS:
            raise InvalidInput("occurred_at may not lie in the future")
        at = parsed_at
    profile = contact_profile(payload, first_name="first_name", phone="phone", email="email", name="full_name")
    if not contact:
        if signal is not None or profile:
            raise InvalidInput("contact_id is required")
        return Parsed(EVENT_TYPE)
    action = Action(
        EVENT_TYPE,
        location,
        contact,
        signal=signal,
        at=at,
        profile=profile,
        event_id=event_id,
        lookup_timezone=bool(profile) and "timezone" not in profile,
    )
    return Parsed(EVENT_TYPE, [action] if action.useful else [], hinted=not named)
