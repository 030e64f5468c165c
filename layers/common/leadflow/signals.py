"""The behavioural signals and every tunable number of the scoring model, in one place.

Weights are the seed's (pricing tool 25%, agent inquiries 20%, neighbourhood research 15%, market
reports 15%, property searches 10%) with the remaining 15% shared by the lighter signals; they sum
to 1. Each signal's events are counted with exponential decay (`half_life_hours`) and saturate
(`saturation`: the decayed count at which a signal gives 63% of its weight), so a tenth listing view
adds less than the first and month-old activity fades away.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum


class Signal(StrEnum):
    PRICING_TOOL_USAGE = "pricing_tool_usage"
    AGENT_INQUIRY = "agent_inquiry"
    NEIGHBORHOOD_RESEARCH = "neighborhood_research"
    MARKET_REPORT_ENGAGEMENT = "market_report_engagement"
    PROPERTY_SEARCH = "property_search"
    LISTING_VIEW = "listing_view"
    EMAIL_OPEN = "email_open"
    WEBSITE_VISIT = "website_visit"
    SMS_RESPONSE = "sms_response"
    VIRTUAL_TOUR_VIEW = "virtual_tour_view"


@dataclass(frozen=True, slots=True)
class SignalSpec:
    signal: Signal
    activity_key: str  # the seed's `activity_data` key
    weight: float
    half_life_hours: float
    saturation: float

    decay_per_second: float = 0.0  # derived from half_life_hours

    def __post_init__(self) -> None:
        object.__setattr__(self, "decay_per_second", math.log(2) / (self.half_life_hours * 3600))


SPECS: tuple[SignalSpec, ...] = (
    SignalSpec(Signal.PRICING_TOOL_USAGE, "pricing_tool_uses", 0.25, 72, 1.5),
    SignalSpec(Signal.AGENT_INQUIRY, "agent_inquiries", 0.20, 96, 1.0),
    SignalSpec(Signal.NEIGHBORHOOD_RESEARCH, "neighborhood_research", 0.15, 120, 1.5),
    SignalSpec(Signal.MARKET_REPORT_ENGAGEMENT, "market_report_engagement", 0.15, 120, 1.5),
    SignalSpec(Signal.PROPERTY_SEARCH, "property_searches", 0.10, 72, 3.0),
    SignalSpec(Signal.LISTING_VIEW, "listing_views", 0.04, 48, 5.0),
    SignalSpec(Signal.EMAIL_OPEN, "email_interactions", 0.03, 72, 3.0),
    SignalSpec(Signal.WEBSITE_VISIT, "website_visits", 0.03, 48, 5.0),
    SignalSpec(Signal.SMS_RESPONSE, "sms_responses", 0.03, 96, 1.5),
    SignalSpec(Signal.VIRTUAL_TOUR_VIEW, "virtual_tour_views", 0.02, 72, 2.0),
)
SPEC: dict[Signal, SignalSpec] = {spec.signal: spec for spec in SPECS}
BY_ACTIVITY_KEY: dict[str, SignalSpec] = {spec.activity_key: spec for spec in SPECS}

# The link from evidence (the weighted sum, 0..1) to likelihood: 100 * (1 - exp(-evidence / LINK_SCALE)).
# Points add up to the likelihood exactly, so key_signals explain all of it. One parameter to fit
# against recorded outcomes (won/lost opportunities) once there are enough of them.
LINK_SCALE = 0.30

# Trend: the recent rate (the signal's own decayed count over its mean lifetime) against the rate
# over TREND_LONG_HALF_LIFE_HOURS. A steady pace gives a ratio of 1 whatever the volume.
TREND_LONG_HALF_LIFE_HOURS = 336.0
TREND_LONG_DECAY_PER_SECOND = math.log(2) / (TREND_LONG_HALF_LIFE_HOURS * 3600)
TREND_UP = 1.3
TREND_DOWN = 0.7

# Intent levels: cold < 20 <= warm < 50 <= hot < 80 <= urgent.
INTENT_THRESHOLDS: tuple[tuple[float, str], ...] = ((80.0, "urgent"), (50.0, "hot"), (20.0, "warm"))

# Confidence (0..1): 50% signal diversity (saturating at DIVERSE_SIGNALS), 30% volume, 20% freshness.
# The seed's rule of thumb: fewer than 3 signals, or nothing in 72 hours, is low confidence (< 0.3).
DIVERSE_SIGNALS = 5
MIN_SIGNALS_FOR_CONFIDENCE = 3
FRESH_HOURS = 72.0
VOLUME_SCALE = 8.0
LOW_CONFIDENCE_FACTOR = 0.29

# Contact window (two hours, inside SENDING_HOURS): where it starts when the lead has no engagement history.
DEFAULT_WINDOW_START = 10
