"""The seed's `activity_data` (lists of {"timestamp": ...} per signal) into a LeadState.

Timestamps are ISO 8601; one without a zone is UTC. Unknown keys are ignored; a malformed item is
an InvalidInput naming its field, e.g. `activity_data.pricing_tool_uses[1].timestamp`.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from leadflow.errors import InvalidInput
from leadflow.lead import LeadState, SignalState
from leadflow.signals import BY_ACTIVITY_KEY, TREND_LONG_DECAY_PER_SECOND

_EPOCH = datetime(1970, 1, 1)


def parse_timestamp(value: Any, field: str) -> float:
    """Epoch seconds of an ISO 8601 string (`Z`, an offset, or no zone meaning UTC)."""
    if not isinstance(value, str):
        raise InvalidInput(f"{field} must be an ISO 8601 string")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(f"{field} is not an ISO 8601 timestamp: {value[:40]!r}") from None
    if parsed.tzinfo is None:
        return (parsed - _EPOCH).total_seconds()
    return parsed.timestamp()


def state_from_activity(activity_data: Any, now: float | None = None) -> LeadState:
    """The lead state the activity describes. Events after `now` (clock skew, bad trackers) count as
    happening at `now`: a future timestamp must not make older events look older than they are."""
    if not isinstance(activity_data, dict):
        raise InvalidInput("activity_data must be an object of event lists")
    state = LeadState()
    hours = state.hours_utc
    exp = math.exp
    long_rate = TREND_LONG_DECAY_PER_SECOND
    for key, items in activity_data.items():
        spec = BY_ACTIVITY_KEY.get(key)
        if spec is None:
            continue
        if not isinstance(items, list):
            raise InvalidInput(f"activity_data.{key} must be a list")
        times = _fast_times(key, items)
        if times is None:  # something unusual: item by item, raising with the field's name
            times = [t for t in (_item_time(key, i, item) for i, item in enumerate(items)) if t is not None]
        if now is not None and times and max(times) > now:
            times = [t if t < now else now for t in times]
        if not times:
            continue
        # The same counters LeadState.add would build one event at a time, computed in bulk.
        last = max(times)
        rate = spec.decay_per_second
        state.signals[spec.signal] = SignalState(
            count=len(times),
            last=last,
            decayed=sum([exp(rate * (t - last)) for t in times]),
            long=sum([exp(long_rate * (t - last)) for t in times]),
        )
        for t in times:
            hours[int(t // 3600) % 24] += 1
    return state


_fromisoformat = datetime.fromisoformat


def _fast_times(key: str, items: list[Any]) -> list[float] | None:
    """Epoch seconds of well-formed items (plain dicts with ISO 8601 string timestamps), in bulk;
    None when any item is not, so that the caller takes the item-by-item path and its messages."""
    if key == "email_interactions":
        wellformed = [item for item in items if type(item) is dict and "timestamp" in item]
        if len(wellformed) != len(items):
            return None
        items = [item for item in wellformed if item.get("opened") is not False]
    epoch = _EPOCH
    fromisoformat = _fromisoformat
    try:
        # Most timestamps carry no zone (UTC): subtracting the naive epoch fails on the first that does.
        times = [(fromisoformat(item["timestamp"]) - epoch).total_seconds() for item in items if type(item) is dict]
    except (KeyError, TypeError, ValueError):
        try:
            parsed = [fromisoformat(item["timestamp"]) for item in items if type(item) is dict]
        except (KeyError, TypeError, ValueError):
            return None
        times = [(p - epoch).total_seconds() if p.tzinfo is None else p.timestamp() for p in parsed]
    return times if len(times) == len(items) else None


def _item_time(key: str, i: int, item: Any) -> float | None:
    if type(item) is not dict or "timestamp" not in item:
        raise InvalidInput(f"activity_data.{key}[{i}].timestamp is required")
    if key == "email_interactions" and item.get("opened") is False:
        return None  # an email sent but not opened is no engagement
    value = item["timestamp"]
    if type(value) is str:
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            if parsed.tzinfo is None:
                return (parsed - _EPOCH).total_seconds()
            return parsed.timestamp()
    return parse_timestamp(value, f"activity_data.{key}[{i}].timestamp")  # raises with the field name


def now_utc() -> datetime:
    return datetime.now(UTC)
