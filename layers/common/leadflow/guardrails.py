"""The guardrails: who may be messaged, on which channel, and when. Pure rules of (lead, now,
settings), plus the atomic reservation of a send under the daily cap.

Reasons, in the order the contract gives precedence: opted_out, paused, daily_cap, quiet_hours.
Florida (known from the contact's state, else its phone's area code) allows 8 am to 8 pm and at
most 3 messages in any 24 hours, on top of SENDING_HOURS and MAX_DAILY_FOLLOWUPS_PER_LEAD.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from leadflow.config import Settings
from leadflow.lead import LeadState
from leadflow.scoring import zone_of

OPTED_OUT, PAUSED, DAILY_CAP, QUIET_HOURS = "opted_out", "paused", "daily_cap", "quiet_hours"
REASONS = (OPTED_OUT, PAUSED, DAILY_CAP, QUIET_HOURS)

FLORIDA_HOURS = (8, 20)
FLORIDA_MAX_PER_24H = 3
# Florida's area codes, for a contact whose state is unknown.
FLORIDA_AREA_CODES = frozenset(
    "239 305 321 324 352 386 407 448 561 645 656 689 727 728 754 772 786 813 850 863 904 941 954".split()  # noqa: SIM905
)


@dataclass(frozen=True, slots=True)
class SendLimits:
    """What applies to one lead now: its local hours, its caps, and where its day starts."""

    hours: tuple[int, int]
    max_per_day: int
    max_per_24h: int  # 0: no rolling limit
    day_start: float  # epoch seconds of the lead's local midnight
    local_hour: int


@dataclass(frozen=True, slots=True)
class SendCounts:
    today: int  # sends since the lead's local midnight
    last_24h: int


def is_florida(state: LeadState) -> bool:
    profile = state.profile
    if profile.state:
        return profile.state.strip().upper() in {"FL", "FLORIDA"}
    return profile.area_code in FLORIDA_AREA_CODES


def limits(state: LeadState, now: datetime, config: Settings) -> SendLimits:
    local = now.astimezone(zone_of(state.profile.timezone, config.default_timezone))
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    hours, per_24h = config.sending_hours, 0
    if is_florida(state):
        hours = (max(hours[0], FLORIDA_HOURS[0]), min(hours[1], FLORIDA_HOURS[1]))
        per_24h = FLORIDA_MAX_PER_24H
    return SendLimits(hours, config.max_daily_followups_per_lead, per_24h, midnight.timestamp(), local.hour)


def in_hours(limit: SendLimits, window: tuple[int, int] | None = None) -> bool:
    """Inside sending hours, and inside `window` (local hours) when one is given."""
    start, end = window or limit.hours
    start, end = max(start, limit.hours[0]), min(end, limit.hours[1])
    return start <= limit.local_hour < end


def blocked(state: LeadState, channel: str, now: datetime, counts: SendCounts, limit: SendLimits) -> str | None:
    """The first reason this lead may not be messaged on `channel` now, or None. `limit` is the
    lead's `limits()` now, which every caller also needs for its day start."""
    profile = state.profile
    if profile.opted_out_of(channel):
        return OPTED_OUT
    if state.paused_until > now.timestamp():
        return PAUSED
    if counts.today >= limit.max_per_day or (limit.max_per_24h and counts.last_24h >= limit.max_per_24h):
        return DAILY_CAP
    if not in_hours(limit):
        return QUIET_HOURS
    return None
