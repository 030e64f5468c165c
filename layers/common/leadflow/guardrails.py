"""The guardrails: who may be messaged, on which channel, and when. Pure rules of (lead, now,
settings), plus the atomic reservation of a send under the daily cap.

Reasons, in the order the contract gives precedence: opted_out, paused, daily_cap, quiet_hours.
Florida (the contact's state is FL, or its phone's area code is a Florida one) allows 8 am to 8 pm
and at most 3 messages in any 24 hours, on top of SENDING_HOURS and MAX_DAILY_FOLLOWUPS_PER_LEAD.
Hours hold on the clock of every zone the lead may be in (`where.lead_zones`: an area code can span
two), and its day starts at the earliest of their midnights.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from leadflow.config import Settings
from leadflow.lead import LeadState
from leadflow.where import lead_zones

OPTED_OUT, PAUSED, DAILY_CAP, QUIET_HOURS = "opted_out", "paused", "daily_cap", "quiet_hours"
REASONS = (OPTED_OUT, PAUSED, DAILY_CAP, QUIET_HOURS)

FLORIDA_HOURS = (8, 20)
FLORIDA_MAX_PER_24H = 3
# Florida's area codes: a contact with one of them gets Florida's rules whatever its state says.
FLORIDA_AREA_CODES = frozenset(
    "239 305 321 324 352 386 407 448 561 645 656 689 727 728 754 772 786 813 850 863 904 941 954".split()  # noqa: SIM905
)


@dataclass(frozen=True, slots=True)
class SendLimits:
    """What applies to one lead now: its allowed hours, its caps, where its day starts, and the hour
    now on the clock of each of its zones (the primary zone's first)."""

    hours: tuple[int, int]
    max_per_day: int
    max_per_24h: int  # 0: no rolling limit
    day_start: float  # epoch seconds of the earliest of its zones' local midnights (the stricter)
    local_hours: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class SendCounts:
    today: int  # sends since the lead's local midnight
    last_24h: int


def is_florida(state: LeadState) -> bool:
    """The state says Florida, or the area code does (either one: a Florida number with a Georgia
    address gets Florida's rules)."""
    profile = state.profile
    in_state = (profile.state or "").strip().upper() in {"FL", "FLORIDA"}
    return in_state or profile.area_code in FLORIDA_AREA_CODES


def limits(state: LeadState, now: datetime, config: Settings) -> SendLimits:
    local = [now.astimezone(zone) for zone in lead_zones(state.profile, config.default_timezone)]
    day_start = min(t.replace(hour=0, minute=0, second=0, microsecond=0).timestamp() for t in local)
    hours, per_24h = config.sending_hours, 0
    if is_florida(state):
        hours = (max(hours[0], FLORIDA_HOURS[0]), min(hours[1], FLORIDA_HOURS[1]))
        per_24h = FLORIDA_MAX_PER_24H
    return SendLimits(hours, config.max_daily_followups_per_lead, per_24h, day_start, tuple(t.hour for t in local))


def in_hours(limit: SendLimits, window: tuple[int, int] | None = None) -> bool:
    """Inside sending hours on every one of the lead's clocks, and inside `window` (hours on its
    primary zone's clock, as the score gives them) when one is given."""
    start, end = limit.hours
    if not all(start <= hour < end for hour in limit.local_hours):
        return False
    return window is None or window[0] <= limit.local_hours[0] < window[1]


def blocked(state: LeadState, channel: str, now: datetime, counts: SendCounts, limit: SendLimits) -> str | None:
    """The first reason this lead may not be messaged on `channel` now, or None. `limit` is the
    lead's `limits()` now, which every caller also needs for its day start."""
    profile = state.profile
    if profile.opted_out_of(channel):
        return OPTED_OUT
    if state.paused(now.timestamp()):
        return PAUSED
    if counts.today >= limit.max_per_day or (limit.max_per_24h and counts.last_24h >= limit.max_per_24h):
        return DAILY_CAP
    if not in_hours(limit):
        return QUIET_HOURS
    return None
