"""The behavioural scoring engine: pure functions of (lead state, now, settings). No I/O, no clock.

likelihood = 100 * (1 - exp(-evidence / LINK_SCALE)), evidence = sum over signals of
weight * (1 - exp(-decayed_count / saturation)). Every term grows with activity, so more activity
never lowers a score, and each signal's points are its share of the evidence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from leadflow import messages
from leadflow.lead import LeadState, SignalState
from leadflow.signals import (
    DEFAULT_WINDOW_START,
    DIVERSE_SIGNALS,
    FRESH_HOURS,
    INTENT_THRESHOLDS,
    LINK_SCALE,
    LOW_CONFIDENCE_FACTOR,
    MIN_SIGNALS_FOR_CONFIDENCE,
    SPEC,
    TREND_DOWN,
    TREND_LONG_DECAY_PER_SECOND,
    TREND_LONG_HALF_LIFE_HOURS,
    TREND_UP,
    VOLUME_SCALE,
    Signal,
)
from leadflow.where import lead_zones, shared_hours

_LN2 = math.log(2)
WINDOW_HOURS = 2  # the contract's contact window


class KeySignal(NamedTuple):
    type: str
    frequency: int
    recency_hours: float
    trend: str
    points: float

    def to_json(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "frequency": self.frequency,
            "recency_hours": self.recency_hours,
            "trend": self.trend,
            "points": self.points,
        }


@dataclass(slots=True)
class PredictiveSellScore:
    lead_id: str
    likelihood_score: float
    intent_level: str
    optimal_contact_window: tuple[int, int]
    recommended_channel: str
    recommended_message: str
    confidence: float
    key_signals: tuple[KeySignal, ...]
    timezone: str
    scored_at: datetime

    @property
    def dominant_signal(self) -> str | None:
        return self.key_signals[0].type if self.key_signals else None

    def to_json(self) -> dict[str, Any]:
        return {
            "lead_id": self.lead_id,
            "likelihood_score": self.likelihood_score,
            "intent_level": self.intent_level,
            "optimal_contact_window": list(self.optimal_contact_window),
            "recommended_channel": self.recommended_channel,
            "recommended_message": self.recommended_message,
            "confidence": self.confidence,
            "key_signals": [k.to_json() for k in self.key_signals],
            "timezone": self.timezone,
            "scored_at": self.scored_at.isoformat().replace("+00:00", "Z"),
        }


def intent_level(likelihood: float) -> str:
    for threshold, level in INTENT_THRESHOLDS:
        if likelihood >= threshold:
            return level
    return "cold"


# Per signal, the constants scoring needs, computed once:
# (weight, decay per second, saturation, trend scale, trend decay difference).
_SCORE_CONSTANTS: dict[Signal, tuple[float, float, float, float, float]] = {
    signal: (
        spec.weight,
        spec.decay_per_second,
        spec.saturation,
        TREND_LONG_HALF_LIFE_HOURS / spec.half_life_hours,
        TREND_LONG_DECAY_PER_SECOND - spec.decay_per_second,
    )
    for signal, spec in SPEC.items()
}


def _contribution(weight: float, rate: float, saturation: float, s: SignalState, age: float) -> float:
    """A signal's weighted, saturated evidence `age` seconds after its last event."""
    return weight * (1.0 - math.exp(-(s.decayed * math.exp(-rate * age)) / saturation))


def _direction(s: SignalState, trend_scale: float, trend_rate: float, age: float) -> str:
    """Recent rate (the signal's own decayed count per half-life) against the long-run rate; both
    counts are held as of the last event, so their ratio `age` seconds later needs one exponential."""
    if s.long <= 0.0:
        return "stable"
    ratio = (s.decayed / s.long) * trend_scale * math.exp(trend_rate * age)
    return "increasing" if ratio >= TREND_UP else "decreasing" if ratio <= TREND_DOWN else "stable"


def _contributions(state: LeadState, now: float) -> dict[Signal, float]:
    """Each signal's evidence at `now` (events after `now` count as now)."""
    out: dict[Signal, float] = {}
    for signal, s in state.signals.items():
        if s.count:
            weight, rate, saturation, _, _ = _SCORE_CONSTANTS[signal]
            out[signal] = _contribution(weight, rate, saturation, s, now - s.last if now > s.last else 0.0)
    return out


def _likelihood(evidence: float) -> float:
    return round(100.0 * (1.0 - math.exp(-evidence / LINK_SCALE)), 1)


def likelihood(state: LeadState, now: float) -> float:
    """The likelihood alone: what the monitor needs to filter candidates."""
    return _likelihood(sum(_contributions(state, now).values()))


def trend(signal: Signal, s: SignalState, now: float) -> str:
    """The signal's trend at `now`: increasing, stable or decreasing."""
    _, _, _, trend_scale, trend_rate = _SCORE_CONSTANTS[signal]
    return _direction(s, trend_scale, trend_rate, now - s.last if now > s.last else 0.0)


def _confidence(distinct: int, events: int, last: float, now: float) -> float:
    """Confidence from the number of distinct signals, of events, and the newest event's time."""
    if not distinct:
        return 0.0
    hours_since = (now - last if now > last else 0.0) / 3600
    diversity = min(distinct, DIVERSE_SIGNALS) / DIVERSE_SIGNALS
    volume = 1.0 - math.exp(-events / VOLUME_SCALE)
    freshness = math.exp(-_LN2 * hours_since / FRESH_HOURS)
    confidence = 0.5 * diversity + 0.3 * volume + 0.2 * freshness
    if distinct < MIN_SIGNALS_FOR_CONFIDENCE or hours_since > FRESH_HOURS:
        confidence *= LOW_CONFIDENCE_FACTOR
    return round(confidence, 2)


def contact_window(hours_utc: list[int], offset_hours: int, sending_hours: tuple[int, int]) -> tuple[int, int]:
    """The 2-hour local window, inside sending hours, in which the lead engages most.

    Ties go to the window that starts at the busier hour (a lead active at 14:00 gets 14-16, not
    13-15), then to the earliest; with no history, the default window (clamped inside the hours).
    """
    start, end = sending_hours
    shift = -offset_hours % 24
    local = hours_utc[shift:] + hours_utc[:shift]  # local[h] = hours_utc[(h - offset_hours) % 24]
    best_start, best, best_first = -1, 0, 0
    for h in range(start, end - WINDOW_HOURS + 1):
        first = local[h]
        engaged = first + local[h + 1]
        if engaged > best or (engaged == best and first > best_first):
            best_start, best, best_first = h, engaged, first
    if best_start < 0:
        best_start = min(max(DEFAULT_WINDOW_START, start), end - WINDOW_HOURS)
    return best_start, best_start + WINDOW_HOURS


def recommended_channel(state: LeadState, contributions: dict[Signal, float], level: str) -> str:
    """SMS or email by the lead's responsiveness on each, among channels it can be reached on;
    a call for an urgent lead who has been asking for an agent and has a phone."""
    profile = state.profile
    if level == "urgent" and Signal.AGENT_INQUIRY in contributions and profile.can_reach("call"):
        return "call"
    sms = contributions.get(Signal.SMS_RESPONSE, 0.0) + 0.001  # SMS is read more: it wins ties
    email = contributions.get(Signal.EMAIL_OPEN, 0.0)
    reachable = [ch for ch in ("sms", "email") if profile.can_reach(ch)] or ["sms", "email"]
    return max(reachable, key=lambda ch: sms if ch == "sms" else email)


@lru_cache(maxsize=4096)
def _zone_offset_hours(zone: ZoneInfo, utc_hour: int) -> int:
    """Whole hours ahead of UTC for a zone at an hour: cached, as the monitor asks per lead."""
    offset = datetime.fromtimestamp(utc_hour * 3600, UTC).astimezone(zone).utcoffset()
    return int((offset.total_seconds() if offset else 0) // 3600)


def score_lead(
    lead_id: str,
    state: LeadState,
    now: datetime,
    sending_hours: tuple[int, int],
    default_timezone: str,
) -> PredictiveSellScore:
    """The full, explainable score of a lead at `now` (timezone-aware).

    One pass over the signals: the monitor rescores many leads with it.
    """
    at = now.timestamp()
    contributions: dict[Signal, float] = {}
    rows: list[tuple[Signal, int, float, str, float]] = []
    events = 0
    last_any = -math.inf
    for signal, s in state.signals.items():
        count = s.count
        if not count:
            continue
        weight, rate, saturation, trend_scale, trend_rate = _SCORE_CONSTANTS[signal]
        last = s.last
        age = at - last if at > last else 0.0
        contribution = contributions[signal] = _contribution(weight, rate, saturation, s, age)
        rows.append((signal, count, age, _direction(s, trend_scale, trend_rate, age), contribution))
        events += count
        last_any = max(last_any, last)
    evidence = sum(contributions.values())
    likelihood_score = _likelihood(evidence)
    level = intent_level(likelihood_score)
    scale = likelihood_score / evidence if evidence else 0.0

    key_signals = [
        _new_tuple(KeySignal, (signal, count, round(age / 3600, 1), direction, round(scale * contribution, 1)))
        for signal, count, age, direction, contribution in rows
    ]
    if len(key_signals) > 1:
        key_signals.sort(key=_by_points)
    zones = lead_zones(state.profile, default_timezone)  # the primary zone first
    zone = zones[0]
    offset_hours = _zone_offset_hours(zone, int(at // 3600))
    if len(zones) > 1:  # a window inside sending hours in each of the lead's zones
        sending_hours = shared_hours(zones, sending_hours, now)
    dominant = key_signals[0].type if key_signals else None
    return PredictiveSellScore(
        lead_id=lead_id,
        likelihood_score=likelihood_score,
        intent_level=level,
        optimal_contact_window=contact_window(state.hours_utc, offset_hours, sending_hours),
        recommended_channel=recommended_channel(state, contributions, level),
        recommended_message=messages.template_message(dominant, state.profile.first_name),
        confidence=_confidence(len(rows), events, last_any, at),
        key_signals=tuple(key_signals),
        timezone=zone.key,
        scored_at=now.astimezone(UTC),
    )


_new_tuple = tuple.__new__  # a KeySignal without NamedTuple's Python-level __new__


def _by_points(k: KeySignal) -> tuple[float, float]:
    return (-k.points, k.recency_hours)
