"""The guardrails as pure rules: who may be messaged, on which channel, when."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from leadflow import guardrails
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
    assert not guardrails.is_florida(lead(state="GA", area_code="305"))


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
    assert limit.local_hour == 12
