"""The guardrails as pure rules: who may be messaged, on which channel, when."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leadflow import guardrails, where
from leadflow.config import Settings
from leadflow.lead import PAUSED_FOR_GOOD, LeadState, Profile

NOON_NY = datetime(2026, 11, 25, 17, 0, tzinfo=UTC)  # 12:00 in New York
CONFIG = Settings(default_timezone="America/New_York", max_daily_followups_per_lead=3)
NONE = guardrails.SendCounts(today=0, last_24h=0)


def blocked(
    state: LeadState, channel: str, now: datetime, counts: guardrails.SendCounts, config: Settings = CONFIG
) -> str | None:
    return guardrails.blocked(state, channel, now, counts, guardrails.limits(state, now, config))


def lead(**profile: object) -> LeadState:
    return LeadState(profile=Profile(**profile))  # type: ignore[arg-type]


def test_a_reachable_lead_at_noon_is_not_blocked() -> None:
    assert blocked(lead(), "sms", NOON_NY, NONE, CONFIG) is None


def test_dnd_opts_the_lead_out_of_every_channel() -> None:
    for channel in ("sms", "email"):
        assert blocked(lead(dnd=True), channel, NOON_NY, NONE, CONFIG) == "opted_out"


def test_a_channel_dnd_blocks_only_that_channel() -> None:
    state = lead(dnd_channels=frozenset({"sms"}))
    assert blocked(state, "sms", NOON_NY, NONE, CONFIG) == "opted_out"
    assert blocked(state, "email", NOON_NY, NONE, CONFIG) is None


def test_a_pause_in_the_future_blocks_and_one_in_the_past_does_not() -> None:
    state = lead()
    state.paused_until = NOON_NY.timestamp() + 60
    assert blocked(state, "sms", NOON_NY, NONE, CONFIG) == "paused"
    state.paused_until = NOON_NY.timestamp() - 60
    assert blocked(state, "sms", NOON_NY, NONE, CONFIG) is None
    state.paused_until = PAUSED_FOR_GOOD
    assert blocked(state, "sms", NOON_NY, NONE, CONFIG) == "paused"


def test_a_booked_appointment_or_a_closed_opportunity_pauses_each_on_its_own() -> None:
    for held in ({"appointments": frozenset({"appt-1"})}, {"outcome": "lost"}, {"outcome": "abandoned"}):
        state = lead()
        for name, value in held.items():
            setattr(state, name, value)
        assert blocked(state, "sms", NOON_NY, NONE, CONFIG) == "paused", held
    still_open = lead()
    still_open.outcome = "open"
    assert blocked(still_open, "sms", NOON_NY, NONE, CONFIG) is None


def test_the_daily_cap_blocks_the_fourth_send_of_the_local_day() -> None:
    assert blocked(lead(), "sms", NOON_NY, guardrails.SendCounts(2, 2), CONFIG) is None
    assert blocked(lead(), "sms", NOON_NY, guardrails.SendCounts(3, 3), CONFIG) == "daily_cap"


@pytest.mark.parametrize(("utc_hour", "quiet"), [(11, True), (12, True), (13, False), (1, False), (2, True)])
def test_sending_hours_are_the_leads_local_8_to_21(utc_hour: int, quiet: bool) -> None:
    # New York is UTC-5 in November: 13:00 UTC is 8 am, 01:00 UTC is 8 pm, 02:00 UTC is 9 pm.
    now = datetime(2026, 11, 25 if utc_hour > 5 else 26, utc_hour, 0, tzinfo=UTC)
    reason = blocked(lead(), "sms", now, NONE, CONFIG)
    assert (reason == "quiet_hours") is quiet


def test_the_leads_own_timezone_decides_quiet_hours() -> None:
    at_6am_in_la = datetime(2026, 11, 25, 14, 0, tzinfo=UTC)  # 9 am in New York
    assert blocked(lead(timezone="America/Los_Angeles"), "sms", at_6am_in_la, NONE, CONFIG) == "quiet_hours"
    assert blocked(lead(), "sms", at_6am_in_la, NONE, CONFIG) is None


def test_florida_by_state_ends_at_8_pm_and_allows_3_in_24_hours() -> None:
    at_8_30_pm = datetime(2026, 11, 26, 1, 30, tzinfo=UTC)
    assert blocked(lead(state="FL"), "sms", at_8_30_pm, NONE, CONFIG) == "quiet_hours"
    assert blocked(lead(state="NY"), "sms", at_8_30_pm, NONE, CONFIG) is None
    relaxed = Settings(default_timezone="America/New_York", max_daily_followups_per_lead=10)
    counts = guardrails.SendCounts(today=0, last_24h=3)
    assert blocked(lead(state="Florida"), "sms", NOON_NY, counts, relaxed) == "daily_cap"
    assert blocked(lead(state="TX"), "sms", NOON_NY, counts, relaxed) is None


def test_florida_by_area_code_when_the_state_is_unknown() -> None:
    assert guardrails.is_florida(lead(area_code="305"))
    assert not guardrails.is_florida(lead(area_code="212"))


def test_a_florida_area_code_gets_florida_rules_whatever_the_state() -> None:
    assert guardrails.is_florida(lead(state="GA", area_code="305"))
    assert guardrails.is_florida(lead(state="FL", area_code="404"))
    assert not guardrails.is_florida(lead(state="GA", area_code="404"))
    at_8_30_pm = datetime(2026, 11, 26, 1, 30, tzinfo=UTC)  # in Miami and Atlanta alike
    assert blocked(lead(state="GA", area_code="305"), "sms", at_8_30_pm, NONE, CONFIG) == "quiet_hours"
    assert blocked(lead(state="GA", area_code="404"), "sms", at_8_30_pm, NONE, CONFIG) is None
    relaxed = Settings(default_timezone="America/New_York", max_daily_followups_per_lead=10)
    three_in_24h = guardrails.SendCounts(today=0, last_24h=3)
    assert blocked(lead(state="GA", area_code="305"), "sms", NOON_NY, three_in_24h, relaxed) == "daily_cap"
    assert blocked(lead(state="GA", area_code="404"), "sms", NOON_NY, three_in_24h, relaxed) is None


def test_reasons_come_in_the_contracts_order() -> None:
    state = lead(dnd=True)
    state.paused_until = PAUSED_FOR_GOOD
    at_night = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)  # 3 am in New York
    full = guardrails.SendCounts(9, 9)
    assert blocked(state, "sms", at_night, full, CONFIG) == "opted_out"
    state.profile.dnd = False
    assert blocked(state, "sms", at_night, full, CONFIG) == "paused"
    state.paused_until = 0
    assert blocked(state, "sms", at_night, full, CONFIG) == "daily_cap"
    assert blocked(state, "sms", at_night, NONE, CONFIG) == "quiet_hours"


def test_the_day_starts_at_the_leads_local_midnight() -> None:
    limit = guardrails.limits(lead(), NOON_NY, CONFIG)
    assert limit.day_start == datetime(2026, 11, 25, 5, 0, tzinfo=UTC).timestamp()
    assert limit.local_hours == (12,)


# Where the lead is: GHL's timezone, else its phone's area code (every zone of it), else the default

AT_5_30_IN_LA = datetime(2026, 11, 25, 13, 30, tzinfo=UTC)  # 8:30 in New York


def test_a_415_lead_without_a_timezone_is_quiet_at_5_30_pacific() -> None:
    assert CONFIG.default_timezone == "America/New_York"
    assert blocked(lead(area_code="415"), "sms", AT_5_30_IN_LA, NONE, CONFIG) == "quiet_hours"
    assert blocked(lead(area_code="212"), "sms", AT_5_30_IN_LA, NONE, CONFIG) is None
    at_8_30_in_la = datetime(2026, 11, 25, 16, 30, tzinfo=UTC)
    assert blocked(lead(area_code="415"), "sms", at_8_30_in_la, NONE, CONFIG) is None


def test_a_timezone_from_ghl_beats_the_area_code() -> None:
    state = lead(area_code="415", timezone="America/New_York")
    assert blocked(state, "sms", AT_5_30_IN_LA, NONE, CONFIG) is None
    assert guardrails.limits(state, AT_5_30_IN_LA, CONFIG).local_hours == (8,)


def test_without_timezone_or_known_area_code_the_default_timezone_decides() -> None:
    assert blocked(lead(area_code="999"), "sms", AT_5_30_IN_LA, NONE, CONFIG) is None
    in_la = Settings(default_timezone="America/Los_Angeles")
    assert blocked(lead(area_code="999"), "sms", AT_5_30_IN_LA, NONE, in_la) == "quiet_hours"


@pytest.mark.parametrize(
    ("utc", "eastern", "quiet"),
    [
        (datetime(2026, 11, 25, 13, 30, tzinfo=UTC), "8:30", True),  # 7:30 in Pensacola
        (datetime(2026, 11, 25, 14, 0, tzinfo=UTC), "9:00", False),  # 8:00 in Pensacola
        (datetime(2026, 11, 26, 0, 30, tzinfo=UTC), "19:30", False),
        (datetime(2026, 11, 26, 1, 0, tzinfo=UTC), "20:00", True),  # Florida: 8 pm in Tallahassee
    ],
)
def test_an_850_lead_is_messaged_only_when_central_and_eastern_are_both_inside(
    utc: datetime, eastern: str, quiet: bool
) -> None:
    assert utc.astimezone(ZoneInfo("America/New_York")).strftime("%-H:%M") == eastern
    assert (blocked(lead(area_code="850"), "sms", utc, NONE, CONFIG) == "quiet_hours") is quiet


def test_an_area_code_spanning_two_zones_ends_with_the_earlier_one() -> None:
    # 423 (Chattanooga) is Central by default with Eastern exchanges: 20:30 Central is 21:30 Eastern.
    in_chicago = Settings(default_timezone="America/Chicago")
    at_20_30_central = datetime(2026, 11, 26, 2, 30, tzinfo=UTC)
    assert blocked(lead(area_code="423"), "sms", at_20_30_central, NONE, in_chicago) == "quiet_hours"
    assert blocked(lead(), "sms", at_20_30_central, NONE, in_chicago) is None


def test_the_day_of_a_lead_in_two_zones_starts_at_the_earliest_midnight() -> None:
    at_noon = guardrails.limits(lead(area_code="850"), NOON_NY, CONFIG)
    assert at_noon.local_hours == (12, 11)
    assert at_noon.day_start == datetime(2026, 11, 25, 5, 0, tzinfo=UTC).timestamp()  # Eastern midnight
    # 00:30 Eastern, 23:30 Central: the Central day, begun at 06:00 UTC the day before, still counts.
    after_eastern_midnight = guardrails.limits(lead(area_code="850"), datetime(2026, 11, 26, 5, 30, tzinfo=UTC), CONFIG)
    assert after_eastern_midnight.day_start == datetime(2026, 11, 25, 6, 0, tzinfo=UTC).timestamp()


def test_a_window_is_read_on_the_primary_zones_clock() -> None:
    limit = guardrails.limits(lead(area_code="850"), NOON_NY, CONFIG)  # 12:00 Eastern, 11:00 Central
    assert guardrails.in_hours(limit, (12, 14))
    assert not guardrails.in_hours(limit, (11, 12))


@settings(max_examples=150, deadline=None)
@given(
    at=st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2032, 12, 31), timezones=st.just(UTC)),
    start=st.integers(min_value=0, max_value=22),
    length=st.integers(min_value=2, max_value=16),
    state=st.sampled_from([None, "FL", "GA"]),
)
def test_allowed_hours_are_sending_hours_in_every_zone_of_every_area_code(
    at: datetime, start: int, length: int, state: str | None
) -> None:
    hours = (start, min(24, start + length))
    config = Settings(default_timezone="Pacific/Guam", sending_hours=hours)  # far from any NANP clock
    for code in sorted(where.known_area_codes()):
        limit = guardrails.limits(lead(area_code=code, state=state), at, config)
        if not guardrails.in_hours(limit):
            continue
        for name in where.area_code_zones(code):
            local = at.astimezone(ZoneInfo(name)).hour
            assert hours[0] <= local < hours[1], (code, name, at)
            if guardrails.is_florida(lead(area_code=code, state=state)):
                assert 8 <= local < 20, (code, name, at)
