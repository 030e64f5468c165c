"""What intake turns a webhook into: actions on leads, each one Redis call.

An Action says which lead, which signal (if any) at what time, which profile attributes (named as
on `lead.Profile`) and guardrail fields (`g:appt:<id>`, `g:outcome`) to set, and the id that
de-duplicates it. Parsing never touches Redis; `service` applies the actions (and checks, for
`unless_own_message`, whether leadflow sent that message itself).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from leadflow.errors import InvalidInput, LeadflowError
from leadflow.lead_state import MAX_ID, encode_profile
from leadflow.signals import Signal

WINDOW_SECONDS = 300  # signed timestamps further than this from now are rejected
MAX_NAME = 60


class Malformed(LeadflowError):
    """A body that is not what the route takes (not JSON, not an object): 400."""

    status = 400


@dataclass(frozen=True, slots=True)
class Action:
    event_type: str
    location_id: str
    contact_id: str
    signal: Signal | None = None
    at: float | None = None
    profile: Mapping[str, Any] = field(default_factory=dict)
    guard: Mapping[str, str] = field(default_factory=dict)
    event_id: str | None = None
    erase: bool = False
    lookup_timezone: bool = False  # ask GHL for the contact's timezone when the lead has none
    pause_at_least: float | None = None  # g:paused_until, unless the lead is already paused longer
    unless_own_message: tuple[str, ...] = ()  # ignore the action if any of these is leadflow's own message

    def fields(self) -> dict[str, str]:
        return encode_profile(self.profile) | dict(self.guard)

    @property
    def useful(self) -> bool:
        return bool(self.erase or self.signal or self.profile or self.guard or self.pause_at_least)


@dataclass(frozen=True, slots=True)
class AppEvent:
    """GHL's INSTALL or UNINSTALL of the marketplace app, for a location or an agency (company)."""

    kind: str  # "INSTALL" | "UNINSTALL"
    location_id: str | None
    company_id: str | None


@dataclass(slots=True)
class Parsed:
    """A delivery's actions; `rejected` holds the events of a batch that could not be used.
    `hinted`: an event's location came from the request (`?location_id`, GHL_LOCATION_ID), not from
    its signed body."""

    event_type: str
    actions: list[Action] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    app: AppEvent | None = None
    hinted: bool = False


def text(value: Any, limit: int = 200) -> str | None:
    """A stripped, bounded string, or None for anything else or an empty one."""
    if isinstance(value, str):
        value = value.strip()[:limit]
        return value or None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)[:limit]
    return None


def identifier(value: Any, name: str) -> str | None:
    """An id as given (stripped), or None; over MAX_ID characters is a 422 naming the field: an id
    is never cut short, where it could become another lead's."""
    raw = text(value, limit=MAX_ID + 1)
    if raw is not None and len(raw) > MAX_ID:
        raise InvalidInput(f"{name}: at most {MAX_ID} characters")
    return raw


def epoch(value: Any) -> float | None:
    """Epoch seconds of an ISO 8601 string (`Z` or an offset; none means UTC), or None."""
    if not isinstance(value, str) or not value.strip():
        return None
    raw = value.strip()
    if raw.endswith(("z", "Z")):
        raw = raw[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=ZoneInfo("UTC"))
    try:
        return parsed.timestamp()
    except (OverflowError, OSError, ValueError):
        return None


def area_code(phone: str) -> str | None:
    """The North American area code of a phone number; the number itself is never kept."""
    digits = re.sub(r"\D", "", phone)
    if phone.strip().startswith("+"):
        return digits[1:4] if digits.startswith("1") and len(digits) == 11 else None
    if len(digits) == 11 and digits.startswith("1"):
        return digits[1:4]
    return digits[:3] if len(digits) == 10 else None


def valid_zone(value: Any) -> str | None:
    name = text(value, 64)
    if not name:
        return None
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None
    return name


def contact_profile(
    payload: Mapping[str, Any], *, first_name: str, phone: str, email: str, name: str | None = None
) -> dict[str, Any]:
    """Profile attributes from a contact's fields, only for the keys the payload carries."""
    profile: dict[str, Any] = {}
    first = text(payload.get(first_name), MAX_NAME)
    if first is None and name and text(payload.get(name)):
        first = str(text(payload.get(name), MAX_NAME)).split()[0]
    if first:
        profile["first_name"] = first
    if phone in payload:
        number = text(payload.get(phone), 40)
        profile["has_phone"] = bool(number)
        code = area_code(number) if number else None
        if code:
            profile["area_code"] = code
    if email in payload:
        profile["has_email"] = bool(text(payload.get(email)))  # never judged: GHL emails may be malformed
    state = text(payload.get("state"), 40)
    if state:
        profile["state"] = state.upper() if len(state) == 2 else state
    zone = valid_zone(payload.get("timezone"))
    if zone:
        profile["timezone"] = zone
    if "assignedTo" in payload:  # GHL's contact events; an empty one unassigns, an odd one is not kept
        user = text(payload.get("assignedTo"), MAX_ID + 1)
        profile["assigned_to"] = user if user and len(user) <= MAX_ID else None
    return profile


# GHL's per-channel DND, as leadflow names channels.
DND_CHANNELS = {"sms": "sms", "email": "email", "call": "call"}
BLOCKED = {"active", "permanent"}


def dnd_channels(settings: Any) -> frozenset[str] | None:
    """Channels blocked by GHL's `dndSettings` ({SMS: {status}, Email: ..., Call: ...}); None if absent."""
    if not isinstance(settings, dict):
        return None
    blocked = set()
    for key, value in settings.items():
        channel = DND_CHANNELS.get(str(key).lower())
        status = value.get("status") if isinstance(value, dict) else None
        if channel and isinstance(status, str) and status.strip().lower() in BLOCKED:
            blocked.add(channel)
    return frozenset(blocked)


class BatchRejected(LeadflowError):
    """No event of a batch could be used: 422 with each event's reason."""

    status = 422

    def __init__(self, message: str, rejected: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.rejected = rejected
