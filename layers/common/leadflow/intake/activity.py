"""Website tracker events (Standard Webhooks signed): one event, or {"events": [...]} of at most 100.

    {"type": "activity", "location_id": "...", "contact_id": "...", "signal": "pricing_tool_usage",
     "occurred_at": "2026-11-23T14:05:00Z", "meta": {...}, "id"?: "..."}

A single unusable event is a 422 naming the field; in a batch the usable events are recorded and the
others come back in `rejected`. The `webhook-id` de-duplicates a delivery (every event of a batch);
an event's own `id` de-duplicates that event across deliveries.
"""

from __future__ import annotations

from typing import Any

from leadflow.errors import InvalidInput
from leadflow.intake.events import Action, BatchRejected, Malformed, Parsed, epoch, identifier
from leadflow.signals import Signal

MAX_EVENTS = 100
FUTURE_SKEW_SECONDS = 60  # clocks differ a little; an event further ahead is refused
EVENT_TYPE = "activity"


def _event(item: Any, index: int | None, *, webhook_id: str, received_at: float, location_hint: str) -> Action:
    if not isinstance(item, dict):
        raise InvalidInput("event must be an object")
    kind = item.get("type", EVENT_TYPE)
    if kind != EVENT_TYPE:
        raise InvalidInput("type must be 'activity'")
    contact = identifier(item.get("contact_id"), "contact_id")
    if not contact:
        raise InvalidInput("contact_id is required")
    raw_signal = item.get("signal")
    try:
        signal = Signal(raw_signal if isinstance(raw_signal, str) else "")
    except ValueError:
        raise InvalidInput(f"signal must be one of {', '.join(s.value for s in Signal)}") from None
    at = received_at
    if item.get("occurred_at") is not None:
        parsed = epoch(item["occurred_at"])
        if parsed is None:
            raise InvalidInput("occurred_at is not an ISO 8601 time")
        if parsed > received_at + FUTURE_SKEW_SECONDS:
            raise InvalidInput("occurred_at may not lie in the future")
        at = parsed
    own_id = identifier(item.get("id"), "id")
    delivery_id = f"wh:{webhook_id}" if index is None else f"wh:{webhook_id}:{index}"
    event_id = f"act:{own_id}" if own_id else delivery_id
    location = identifier(item.get("location_id"), "location_id") or location_hint
    return Action(EVENT_TYPE, location, contact, signal=signal, at=at, event_id=event_id)


def _names_location(item: Any) -> bool:
    return isinstance(item, dict) and bool(identifier(item.get("location_id"), "location_id"))


def parse(payload: Any, *, webhook_id: str, received_at: float, location_hint: str) -> Parsed:
    if not isinstance(payload, dict):
        raise Malformed('body must be a JSON object: one event or {"events": [...]}')
    if "events" not in payload:
        single = _event(payload, None, webhook_id=webhook_id, received_at=received_at, location_hint=location_hint)
        return Parsed(EVENT_TYPE, [single], hinted=not _names_location(payload))
    events = payload["events"]
    if not isinstance(events, list) or not events:
        raise InvalidInput("events must be a non-empty list")
    if len(events) > MAX_EVENTS:
        raise InvalidInput(f"events: at most {MAX_EVENTS} per delivery")
    parsed = Parsed(EVENT_TYPE)
    for index, item in enumerate(events):
        try:
            parsed.actions.append(
                _event(item, index, webhook_id=webhook_id, received_at=received_at, location_hint=location_hint)
            )
            parsed.hinted |= not _names_location(item)
        except InvalidInput as exc:
            parsed.rejected.append({"index": index, "message": exc.message})
    if not parsed.actions:
        raise BatchRejected("no usable event in the batch", parsed.rejected)
    return parsed
