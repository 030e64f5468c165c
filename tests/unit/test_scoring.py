"""The behavioural scoring engine: pure functions of (lead state, now, settings).

Property tests (hypothesis) hold the model's promises over any activity: bounds, monotonicity,
decay, confidence, explanations that add up, a contact window inside sending hours; example tests
pin the worked cases (the seed's example is hot, trends read time, the channel follows reachability).
"""

from __future__ import annotations

import math
import zoneinfo
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leadflow import where
from leadflow.activity import state_from_activity
from leadflow.lead import LeadState, Profile
from leadflow.scoring import PredictiveSellScore, intent_level, likelihood, score_lead, trend
from leadflow.signals import SPEC, Signal
from tests.helpers import seed_example

NOW = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)
T = NOW.timestamp()
HOUR = 3600.0
DAY = 86_400.0
SENDING_HOURS = (8, 21)
DEFAULT_TZ = "America/New_York"
PROPERTY = settings(max_examples=60, deadline=None)

Event = tuple[Signal, float]  # (signal, age in seconds before NOW)

signals = st.sampled_from(list(Signal))
ages = st.floats(min_value=0.0, max_value=30 * DAY, allow_nan=False)
events = st.lists(st.tuples(signals, ages), max_size=40)


def state_of(evts: Sequence[Event], profile: Profile | None = None) -> LeadState:
    state = LeadState(profile=profile or Profile())
    for signal, age in evts:
        state.add(signal, T - age)
    return state


def score(state: LeadState, now: datetime = NOW, sending_hours: tuple[int, int] = SENDING_HOURS) -> PredictiveSellScore:
    return score_lead("lead-1", state, now, sending_hours, DEFAULT_TZ)


def every(hours: float, *, signal: Signal, from_hours: float, to_hours: float) -> list[Event]:
    """Events of one signal at a steady pace, `from_hours` to `to_hours` ago."""
    count = int((to_hours - from_hours) // hours) + 1
    return [(signal, (from_hours + k * hours) * HOUR) for k in range(count)]


# Bounds, monotonicity, decay


@PROPERTY
@given(st.lists(st.tuples(signals, ages), max_size=300))
def test_likelihood_is_always_between_0_and_100(evts: list[Event]) -> None:
    assert 0.0 <= likelihood(state_of(evts), T) <= 100.0


@PROPERTY
@given(events, signals, ages)
def test_adding_any_event_never_lowers_the_likelihood(evts: list[Event], signal: Signal, age: float) -> None:
    before = likelihood(state_of(evts), T)
    after = likelihood(state_of([*evts, (signal, age)]), T)
    assert after >= before


@PROPERTY
@given(events, st.floats(min_value=0.0, max_value=60 * DAY))
def test_the_same_activity_shifted_older_never_scores_higher(evts: list[Event], shift: float) -> None:
    older = [(signal, age + shift) for signal, age in evts]
    assert likelihood(state_of(older), T) <= likelihood(state_of(evts), T)


@PROPERTY
@given(st.lists(st.tuples(signals, st.floats(min_value=30 * DAY, max_value=90 * DAY)), max_size=40))
def test_workload_sized_activity_thirty_days_old_is_cold(evts: list[Event]) -> None:
    assert score(state_of(evts)).intent_level == "cold"


def test_forty_of_the_strongest_events_thirty_days_old_are_still_cold() -> None:
    # Given the worst case of the workload's size: 40 events of the slowest-decaying heavy signals
    evts = [(Signal.NEIGHBORHOOD_RESEARCH, 30 * DAY)] * 20 + [(Signal.MARKET_REPORT_ENGAGEMENT, 30 * DAY)] * 20
    # Then the lead is cold
    assert score(state_of(evts)).intent_level == "cold"


# Worked cases


def test_the_seed_worked_example_is_hot() -> None:
    result = score(state_from_activity(seed_example(NOW)))
    assert result.intent_level == "hot"


def test_the_seed_worked_example_is_explained_by_pricing_tool_usage_first() -> None:
    result = score(state_from_activity(seed_example(NOW)))
    assert [k.type for k in result.key_signals] == [
        "pricing_tool_usage",
        "agent_inquiry",
        "neighborhood_research",
    ]


def test_no_activity_is_cold_with_confidence_below_0_3() -> None:
    result = score(LeadState())
    assert (result.likelihood_score, result.intent_level, result.key_signals) == (0.0, "cold", ())
    assert result.confidence < 0.3


@pytest.mark.parametrize(
    ("score_value", "level"),
    [(0.0, "cold"), (19.9, "cold"), (20.0, "warm"), (49.9, "warm"), (50.0, "hot"), (79.9, "hot"), (80.0, "urgent")],
)
def test_intent_level_follows_the_contract_thresholds(score_value: float, level: str) -> None:
    assert intent_level(score_value) == level


def test_a_lead_busy_on_every_signal_right_now_is_urgent() -> None:
    evts = [(signal, HOUR) for signal in Signal for _ in range(5)]
    assert score(state_of(evts)).intent_level == "urgent"


# Confidence


@PROPERTY
@given(st.lists(st.tuples(st.sampled_from([Signal.PRICING_TOOL_USAGE, Signal.AGENT_INQUIRY]), ages), max_size=60))
def test_fewer_than_three_signals_give_confidence_below_0_3(evts: list[Event]) -> None:
    assert score(state_of(evts)).confidence < 0.3


@PROPERTY
@given(st.lists(st.tuples(signals, st.floats(min_value=72 * HOUR + 1, max_value=60 * DAY)), max_size=60))
def test_nothing_in_the_last_72_hours_gives_confidence_below_0_3(evts: list[Event]) -> None:
    assert score(state_of(evts)).confidence < 0.3


def test_varied_fresh_activity_gives_high_confidence() -> None:
    evts = [(signal, 2 * HOUR) for signal in list(Signal)[:5] for _ in range(2)]
    assert score(state_of(evts)).confidence >= 0.7


# Explanations


@PROPERTY
@given(events)
def test_points_add_up_to_the_likelihood(evts: list[Event]) -> None:
    result = score(state_of(evts))
    total = sum(k.points for k in result.key_signals)
    rounding = 0.05 * (len(result.key_signals) + 1) + 1e-9
    assert abs(total - result.likelihood_score) <= rounding


@PROPERTY
@given(events)
def test_key_signals_are_sorted_by_points_largest_first(evts: list[Event]) -> None:
    points = [k.points for k in score(state_of(evts)).key_signals]
    assert points == sorted(points, reverse=True)


@PROPERTY
@given(events)
def test_key_signals_report_frequency_and_recency_of_each_signal(evts: list[Event]) -> None:
    result = score(state_of(evts))
    by_signal: dict[Signal, list[float]] = {}
    for signal, age in evts:
        by_signal.setdefault(signal, []).append(age)
    reported = {k.type: (k.frequency, k.recency_hours) for k in result.key_signals}
    assert reported.keys() == by_signal.keys()
    for signal, signal_ages in by_signal.items():
        frequency, recency = reported[signal]
        assert frequency == len(signal_ages)
        assert recency == pytest.approx(min(signal_ages) / HOUR, abs=0.051)


# Trend


@pytest.mark.parametrize("signal", list(Signal))
def test_a_steady_pace_is_a_stable_trend(signal: Signal) -> None:
    state = state_of(every(12, signal=signal, from_hours=1, to_hours=90 * 24))
    assert trend(signal, state.signals[signal], T) == "stable"


@pytest.mark.parametrize("signal", list(Signal))
def test_a_burst_today_after_quiet_weeks_is_an_increasing_trend(signal: Signal) -> None:
    evts = [(signal, d * DAY) for d in (21, 24, 28)] + [(signal, h * HOUR) for h in (1, 3, 5)]
    state = state_of(evts)
    assert trend(signal, state.signals[signal], T) == "increasing"


@pytest.mark.parametrize("signal", list(Signal))
def test_quiet_lately_after_a_busy_past_is_a_decreasing_trend(signal: Signal) -> None:
    state = state_of(every(8, signal=signal, from_hours=10 * 24, to_hours=30 * 24))
    assert trend(signal, state.signals[signal], T) == "decreasing"


def test_a_steady_pace_stays_stable_whatever_the_volume() -> None:
    sparse = state_of(every(24, signal=Signal.LISTING_VIEW, from_hours=1, to_hours=90 * 24))
    dense = state_of(every(2, signal=Signal.LISTING_VIEW, from_hours=1, to_hours=90 * 24))
    trends = {trend(Signal.LISTING_VIEW, s.signals[Signal.LISTING_VIEW], T) for s in (sparse, dense)}
    assert trends == {"stable"}


def test_trend_reads_time_as_it_passes_a_burst_goes_from_increasing_to_decreasing() -> None:
    evts = every(24, signal=Signal.PROPERTY_SEARCH, from_hours=0, to_hours=60 * 24)
    evts += [(Signal.PROPERTY_SEARCH, h * HOUR) for h in range(10)]
    s = state_of(evts).signals[Signal.PROPERTY_SEARCH]
    assert (trend(Signal.PROPERTY_SEARCH, s, T), trend(Signal.PROPERTY_SEARCH, s, T + 21 * DAY)) == (
        "increasing",
        "decreasing",
    )


# Contact window

histograms = st.lists(st.integers(min_value=0, max_value=50), min_size=24, max_size=24)
zones = st.sampled_from(sorted(zoneinfo.available_timezones() - {"Factory", "localtime"}))
sending = (
    st.tuples(st.integers(0, 22), st.integers(2, 24))
    .map(lambda p: (p[0], max(p[0] + 2, p[1])))
    .filter(lambda p: p[1] <= 24)
)
moments = st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 12, 31), timezones=st.just(UTC))


@settings(max_examples=150, deadline=None)
@given(histograms, zones, sending, moments)
def test_contact_window_is_always_two_hours_inside_sending_hours(
    hours: list[int], zone: str, sending_hours: tuple[int, int], now: datetime
) -> None:
    state = LeadState(hours_utc=hours, profile=Profile(timezone=zone))
    start, end = score(state, now, sending_hours).optimal_contact_window
    assert end - start == 2
    assert sending_hours[0] <= start < end <= sending_hours[1]


def test_contact_window_follows_engagement_hours_in_the_lead_own_timezone() -> None:
    # Given a lead in Los Angeles who engages around 14:00 local (22:00 UTC in November)
    state = LeadState(profile=Profile(timezone="America/Los_Angeles"))
    for day, minute in ((1, 5), (2, 40), (3, 20)):
        state.add(Signal.LISTING_VIEW, (NOW.replace(hour=22, minute=minute) - timedelta(days=day)).timestamp())
    # When scored
    result = score(state)
    # Then the window is 14-16 in its own timezone
    assert (result.optimal_contact_window, result.timezone) == ((14, 16), "America/Los_Angeles")


def test_contact_window_uses_the_default_timezone_when_the_lead_has_none() -> None:
    state = LeadState()
    state.add(Signal.LISTING_VIEW, NOW.replace(hour=16).timestamp() - DAY)  # 11:00 in New York
    result = score(state)
    assert (result.optimal_contact_window, result.timezone) == ((11, 13), DEFAULT_TZ)


def test_contact_window_is_in_the_area_codes_zone_when_the_lead_has_no_timezone() -> None:
    # A 415 number, no timezone from GHL, engaging around 14:00 Pacific (22:00 UTC in November)
    state = LeadState(profile=Profile(area_code="415"))
    for day in (1, 2, 3):
        state.add(Signal.LISTING_VIEW, (NOW.replace(hour=22, minute=10) - timedelta(days=day)).timestamp())
    result = score(state)
    assert (result.optimal_contact_window, result.timezone) == ((14, 16), "America/Los_Angeles")


def test_a_timezone_from_ghl_beats_the_area_code_in_the_score() -> None:
    result = score(LeadState(profile=Profile(timezone="America/Chicago", area_code="415")))
    assert result.timezone == "America/Chicago"


def test_an_850_leads_window_is_inside_sending_hours_on_central_clocks_too() -> None:
    # Engaging from 8:00 Eastern (7:00 Central): 8-10 Eastern would begin before 8 in Pensacola.
    state = LeadState(profile=Profile(area_code="850"))
    for day in (1, 2, 3):
        state.add(Signal.LISTING_VIEW, NOW.replace(hour=13).timestamp() - day * DAY)
    state.add(Signal.LISTING_VIEW, NOW.replace(hour=14).timestamp() - DAY)
    result = score(state)
    assert (result.optimal_contact_window, result.timezone) == ((9, 11), "America/New_York")


area_codes = st.sampled_from(sorted(where.known_area_codes()))


@settings(max_examples=150, deadline=None)
@given(histograms, area_codes, moments)
def test_contact_window_is_inside_sending_hours_on_every_clock_of_the_area_code(
    hours: list[int], code: str, now: datetime
) -> None:
    state = LeadState(hours_utc=hours, profile=Profile(area_code=code))
    result = score(state, now)
    start, end = result.optimal_contact_window
    assert end - start == 2
    lead_zones = where.lead_zones(state.profile, DEFAULT_TZ)
    assert result.timezone == lead_zones[0].key
    primary = now.astimezone(lead_zones[0]).utcoffset()
    for zone in lead_zones:
        ahead = (now.astimezone(zone).utcoffset() - primary).total_seconds() / 3600  # type: ignore[operator]
        for minute in range(start * 60, end * 60, 15):  # the window's minutes on the primary clock
            assert SENDING_HOURS[0] <= math.floor(minute / 60 + ahead) < SENDING_HOURS[1], (code, zone.key)


def test_contact_window_never_leaves_sending_hours_even_for_a_night_owl() -> None:
    state = LeadState(profile=Profile(timezone="UTC"))
    for day in range(1, 6):
        state.add(Signal.WEBSITE_VISIT, NOW.replace(hour=3).timestamp() - day * DAY)
    assert score(state).optimal_contact_window == (10, 12)


# Channel


def test_sms_is_recommended_by_default() -> None:
    assert score(state_of([(Signal.LISTING_VIEW, HOUR)])).recommended_channel == "sms"


def test_email_is_recommended_when_only_email_is_reachable() -> None:
    state = state_of([(Signal.LISTING_VIEW, HOUR)], Profile(has_phone=False))
    assert score(state).recommended_channel == "email"


def test_email_is_recommended_to_a_lead_who_opens_emails_and_never_replies_by_sms() -> None:
    state = state_of([(Signal.EMAIL_OPEN, HOUR), (Signal.EMAIL_OPEN, 2 * HOUR)])
    assert score(state).recommended_channel == "email"


def test_sms_dnd_moves_even_an_sms_responder_to_email() -> None:
    state = state_of([(Signal.SMS_RESPONSE, HOUR)] * 3, Profile(dnd_channels=frozenset({"sms"})))
    assert score(state).recommended_channel == "email"


def test_email_dnd_moves_even_an_email_reader_to_sms() -> None:
    state = state_of([(Signal.EMAIL_OPEN, HOUR)] * 3, Profile(dnd_channels=frozenset({"email"})))
    assert score(state).recommended_channel == "sms"


def test_an_urgent_lead_asking_for_an_agent_gets_a_call() -> None:
    state = state_of([(signal, HOUR) for signal in Signal for _ in range(5)])
    assert score(state).recommended_channel == "call"


def test_call_dnd_keeps_an_urgent_lead_off_the_phone() -> None:
    state = state_of([(signal, HOUR) for signal in Signal for _ in range(5)], Profile(dnd_channels=frozenset({"call"})))
    assert score(state).recommended_channel == "sms"


# The message


def test_the_message_follows_the_dominant_signal_and_greets_by_first_name() -> None:
    state = state_of([(Signal.VIRTUAL_TOUR_VIEW, HOUR)], Profile(first_name="Ana"))
    message = score(state).recommended_message
    assert message.startswith("Hi Ana! ")
    assert "virtual tour" in message


# Counters: order independence and bulk agreement


def _assert_same_counters(a: LeadState, b: LeadState) -> None:
    assert a.signals.keys() == b.signals.keys()
    for signal, sa in a.signals.items():
        sb = b.signals[signal]
        assert (sa.count, sa.last) == (sb.count, sb.last)
        assert sa.decayed == pytest.approx(sb.decayed, rel=1e-9)
        assert sa.long == pytest.approx(sb.long, rel=1e-9)
    assert a.hours_utc == b.hours_utc


@PROPERTY
@given(events.flatmap(lambda evts: st.tuples(st.just(evts), st.permutations(evts))))
def test_any_order_of_the_same_events_gives_the_same_counters(pair: tuple[list[Event], list[Event]]) -> None:
    evts, shuffled = pair
    _assert_same_counters(state_of(evts), state_of(shuffled))


whole_seconds = st.integers(min_value=0, max_value=30 * 86_400).map(float)


@PROPERTY
@given(st.lists(st.tuples(signals, whole_seconds), max_size=40))
def test_events_one_at_a_time_agree_with_activity_data_in_bulk(evts: list[Event]) -> None:
    activity: dict[str, list[dict[str, str]]] = {}
    for signal, age in evts:
        stamp = datetime.fromtimestamp(T - age, UTC).replace(tzinfo=None).isoformat()
        activity.setdefault(SPEC[signal].activity_key, []).append({"timestamp": stamp})
    _assert_same_counters(state_of(evts), state_from_activity(activity))


def test_likelihood_alone_matches_the_full_score() -> None:
    state = state_from_activity(seed_example(NOW))
    assert math.isclose(likelihood(state, T), score(state).likelihood_score)
