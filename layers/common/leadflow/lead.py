"""A lead as leadflow holds it: its profile and, per signal, decayed counters that make the score
at any moment follow without replaying history.

Per signal: `count` (events on record), `last` (epoch seconds of the newest event), and two decayed
counts as of `last`: `decayed` (the signal's own half-life, for the score and the recent rate) and
`long` (TREND_LONG_HALF_LIFE_HOURS, for the long-run rate). Adding an event is order-independent:
an older event adds its own decayed weight, a newer one decays the counters to its time and adds 1.
The Redis Lua script in `lead_state` applies exactly this rule (a test holds the two together).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from leadflow.signals import SPEC, TREND_LONG_DECAY_PER_SECOND, Signal

CHANNELS = ("sms", "email")


@dataclass(slots=True)
class SignalState:
    count: int = 0
    last: float = 0.0
    decayed: float = 0.0
    long: float = 0.0

    def add(self, signal: Signal, at: float) -> None:
        rate = SPEC[signal].decay_per_second
        if self.count == 0:
            self.decayed, self.long, self.last = 1.0, 1.0, at
        elif at >= self.last:
            gap = at - self.last
            self.decayed = self.decayed * math.exp(-rate * gap) + 1.0
            self.long = self.long * math.exp(-TREND_LONG_DECAY_PER_SECOND * gap) + 1.0
            self.last = at
        else:
            gap = self.last - at
            self.decayed += math.exp(-rate * gap)
            self.long += math.exp(-TREND_LONG_DECAY_PER_SECOND * gap)
        self.count += 1


@dataclass(slots=True)
class Profile:
    """What GHL tells about the contact. Unknown contact details count as present."""

    first_name: str | None = None
    timezone: str | None = None
    state: str | None = None  # US state, e.g. "FL"
    area_code: str | None = None  # of the phone number; the number itself is not kept
    has_phone: bool = True
    has_email: bool = True
    dnd: bool = False  # GHL's contact-wide DND; only a later GHL contact event changes it
    dnd_channels: frozenset[str] = frozenset()  # GHL's per-channel DND: "sms", "email", "call"
    opted_out: bool = False  # an inbound STOP-family reply; START/UNSTOP/YES lifts this, nothing else
    assigned_to: str | None = None  # GHL's `assignedTo`: the user a handoff task goes to

    def opted_out_of(self, channel: str) -> bool:
        return self.dnd or self.opted_out or channel in self.dnd_channels

    def can_reach(self, channel: str) -> bool:
        if self.opted_out_of(channel):
            return False
        if channel == "email":
            return self.has_email
        return self.has_phone


@dataclass(slots=True)
class LeadState:
    signals: dict[Signal, SignalState] = field(default_factory=dict)
    hours_utc: list[int] = field(default_factory=lambda: [0] * 24)  # engagement by UTC hour
    profile: Profile = field(default_factory=Profile)
    paused_until: float = 0.0  # a reply or an agent's message: stop-on-reply (epoch seconds)
    appointments: frozenset[str] = frozenset()  # ids of the lead's appointments booked now
    outcome: str | None = None  # "won" | "lost" | "abandoned", kept to calibrate the model
    first_seen: float = 0.0
    tz_checked: float = 0.0  # epoch seconds of the last timezone lookup (intake.contacts)

    def add(self, signal: Signal, at: float) -> None:
        state = self.signals.get(signal)
        if state is None:
            state = self.signals[signal] = SignalState()
        state.add(signal, at)
        self.hours_utc[int(at // 3600) % 24] += 1

    def paused(self, now: float) -> bool:
        """Automated follow-up waits: the one place for the rule (see the guardrail state below)."""
        return self.paused_until > now or bool(self.appointments) or self.outcome in CLOSED_OUTCOMES

    @property
    def event_count(self) -> int:
        return sum(s.count for s in self.signals.values())

    @property
    def last_event(self) -> float | None:
        return max((s.last for s in self.signals.values() if s.count), default=None)


# Guardrail state, as the webhook records it and the monitor and send function read it:
# - opted out: `profile.dnd` (every channel: GHL's boolean DND), a channel in `profile.dnd_channels`
#   (GHL's per-channel dndSettings), or `profile.opted_out` (an inbound STOP-family keyword, which
#   START/UNSTOP/YES lifts; GHL's own DND changes only with a newer GHL contact event).
# - paused (`LeadState.paused`), while any of these holds, each lifted only by its own events:
#   `paused_until` (epoch seconds) in the future: a reply, or an agent's message from GHL, pauses for
#   STOP_ON_REPLY_HOURS (a pause never shortens a longer one); an appointment booked (one hash field
#   per appointment, removed when that appointment is cancelled, invalid, a no-show or deleted); the
#   opportunity closed (won, lost or abandoned: for good).
PAUSED_FOR_GOOD = math.inf  # a paused_until without end (as written before appointments had their own)
CLOSED_OUTCOMES = frozenset({"won", "lost", "abandoned"})
