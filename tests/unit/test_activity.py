"""The seed's activity_data into lead state: timestamps, unknown keys, malformed items."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest

from leadflow.activity import parse_timestamp, state_from_activity
from leadflow.errors import InvalidInput
from leadflow.signals import Signal

EPOCH_2026 = datetime(2026, 11, 23, 14, 5, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    "stamp",
    ["2026-11-23T14:05:00Z", "2026-11-23T14:05:00+00:00", "2026-11-23T14:05:00", "2026-11-23T09:05:00-05:00"],
)
def test_timestamps_with_z_offset_or_no_zone_are_the_same_utc_instant(stamp: str) -> None:
    assert parse_timestamp(stamp, "t") == EPOCH_2026


def test_a_timestamp_without_a_zone_is_utc_whatever_the_local_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        state = state_from_activity({"listing_views": [{"timestamp": "2026-11-23T14:05:00"}]})
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    assert state.signals[Signal.LISTING_VIEW].last == EPOCH_2026


def test_each_activity_key_becomes_its_signal() -> None:
    activity = {
        "pricing_tool_uses": [{"timestamp": "2026-11-23T10:00:00Z"}, {"timestamp": "2026-11-23T11:00:00Z"}],
        "agent_inquiries": [{"timestamp": "2026-11-22T16:00:00", "type": "call"}],
        "virtual_tour_views": [{"timestamp": "2026-11-20T16:00:00+00:00"}],
    }
    state = state_from_activity(activity)
    counts = {signal: s.count for signal, s in state.signals.items()}
    assert counts == {Signal.PRICING_TOOL_USAGE: 2, Signal.AGENT_INQUIRY: 1, Signal.VIRTUAL_TOUR_VIEW: 1}


def test_events_land_in_the_utc_hour_histogram() -> None:
    state = state_from_activity({"listing_views": [{"timestamp": "2026-11-23T09:05:00-05:00"}]})
    assert [h for h, n in enumerate(state.hours_utc) if n] == [14]


def test_unknown_keys_are_ignored() -> None:
    state = state_from_activity({"page_scrolls": [{"timestamp": "nonsense"}], "pricing_tool_use": "x"})
    assert state.signals == {}


def test_empty_lists_record_no_signal() -> None:
    assert state_from_activity({"listing_views": [], "email_interactions": []}).signals == {}


@pytest.mark.parametrize(
    ("items", "field"),
    [
        (
            [{"timestamp": "2026-11-23T10:00:00Z"}, {"timestamp": "yesterday"}],
            "activity_data.listing_views[1].timestamp",
        ),
        ([{"timestamp": 1763900000}], "activity_data.listing_views[0].timestamp"),
        ([{"when": "2026-11-23T10:00:00Z"}], "activity_data.listing_views[0].timestamp"),
        (["2026-11-23T10:00:00Z"], "activity_data.listing_views[0].timestamp"),
        ([{"timestamp": None}], "activity_data.listing_views[0].timestamp"),
    ],
)
def test_a_malformed_item_is_invalid_input_naming_its_field(items: list[Any], field: str) -> None:
    with pytest.raises(InvalidInput, match="^" + re.escape(field) + " "):
        state_from_activity({"listing_views": items})


def test_a_list_that_is_not_a_list_is_invalid_input_naming_the_key() -> None:
    with pytest.raises(InvalidInput, match=r"activity_data\.listing_views must be a list"):
        state_from_activity({"listing_views": {"timestamp": "2026-11-23T10:00:00Z"}})


@pytest.mark.parametrize("activity", [None, [], "activity", 3])
def test_activity_data_that_is_not_an_object_is_invalid_input(activity: Any) -> None:
    with pytest.raises(InvalidInput, match="activity_data must be an object"):
        state_from_activity(activity)


def test_email_interactions_not_opened_are_skipped() -> None:
    activity = {
        "email_interactions": [
            {"timestamp": "2026-11-23T10:00:00Z", "opened": False},
            {"timestamp": "2026-11-23T11:00:00Z", "opened": True},
            {"timestamp": "2026-11-23T12:00:00Z"},
        ]
    }
    opens = state_from_activity(activity).signals[Signal.EMAIL_OPEN]
    assert (opens.count, opens.last) == (2, datetime(2026, 11, 23, 12, tzinfo=UTC).timestamp())


def test_only_unopened_emails_record_no_email_signal() -> None:
    activity = {"email_interactions": [{"timestamp": "2026-11-23T10:00:00Z", "opened": False}]}
    assert state_from_activity(activity).signals == {}


def test_an_event_dated_in_the_future_never_lowers_the_score() -> None:
    from datetime import UTC, datetime, timedelta

    from leadflow.leads import score_activity

    now = datetime(2026, 11, 25, 17, 0, tzinfo=UTC)
    uses = [{"timestamp": (now - timedelta(hours=h)).isoformat()} for h in (2, 20, 30, 40, 50, 60)]
    before = score_activity("x", {"pricing_tool_uses": uses}, now).likelihood_score
    ahead = {"timestamp": (now + timedelta(days=5)).isoformat()}
    after = score_activity("x", {"pricing_tool_uses": [*uses, ahead]}, now)
    assert after.likelihood_score >= before
    assert after.key_signals[0].recency_hours == 0.0
