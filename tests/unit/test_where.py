"""Where a lead is: its zones from GHL's timezone, else its area code (libphonenumber's table),
else DEFAULT_TIMEZONE; and sending hours on its primary zone's clock when an area code spans two."""

from __future__ import annotations

import math
import subprocess
import sys
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from leadflow import where
from leadflow.lead import Profile
from tests.helpers import ROOT

DEFAULT = "America/New_York"


def names(profile: Profile, default: str = DEFAULT) -> tuple[str, ...]:
    return tuple(zone.key for zone in where.lead_zones(profile, default))


@pytest.mark.parametrize(
    ("code", "zones"),
    [
        ("415", ("America/Los_Angeles",)),
        ("212", ("America/New_York",)),
        ("305", ("America/New_York",)),
        ("850", ("America/New_York", "America/Chicago")),  # Central exchanges listed under the Eastern default
        ("310", ("America/Los_Angeles",)),  # listed only exchange by exchange
        ("999", ()),
        ("", ()),
        (None, ()),
    ],
)
def test_an_area_codes_zones_come_from_libphonenumber(code: str | None, zones: tuple[str, ...]) -> None:
    assert where.area_code_zones(code) == zones


def test_every_prefix_under_an_area_code_counts() -> None:
    from phonenumbers.tzdata import TIMEZONE_DATA

    for code in where.known_area_codes():
        expected = {zone for prefix, zs in TIMEZONE_DATA.items() if prefix[1:4] == code and prefix[0] == "1"
                    and len(prefix) >= 4 for zone in zs}  # fmt: skip
        assert set(where.area_code_zones(code)) == expected, code


def test_the_ghl_timezone_comes_first_then_the_area_code_then_the_default() -> None:
    assert names(Profile(timezone="America/Denver", area_code="415")) == ("America/Denver",)
    assert names(Profile(area_code="415")) == ("America/Los_Angeles",)
    assert names(Profile(area_code="850")) == ("America/New_York", "America/Chicago")
    assert names(Profile(area_code="999")) == (DEFAULT,)
    assert names(Profile(), "America/Chicago") == ("America/Chicago",)
    assert names(Profile(timezone="Mars/Olympus_Mons", area_code="415")) == ("America/Los_Angeles",)


def test_importing_where_loads_no_phonenumbers_until_a_lead_needs_an_area_code() -> None:
    code = (
        "import sys; from leadflow import where; "
        "assert 'phonenumbers' not in sys.modules; "
        "assert where.area_code_zones('415') == ('America/Los_Angeles',)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, env={"PYTHONPATH": str(ROOT / "layers/common")})


# Sending hours on the primary zone's clock

NOVEMBER = datetime(2026, 11, 25, 17, 0, tzinfo=UTC)
JULY = datetime(2026, 7, 15, 17, 0, tzinfo=UTC)


def zones(*keys: str) -> tuple[ZoneInfo, ...]:
    return tuple(ZoneInfo(key) for key in keys)


def test_one_zone_keeps_the_sending_hours() -> None:
    assert where.shared_hours(zones("America/Los_Angeles"), (8, 21), NOVEMBER) == (8, 21)


def test_850_sends_9_to_21_on_eastern_clocks() -> None:
    assert where.shared_hours(zones("America/New_York", "America/Chicago"), (8, 21), NOVEMBER) == (9, 21)
    assert where.shared_hours(zones("America/Chicago", "America/New_York"), (8, 21), NOVEMBER) == (8, 20)


def test_a_half_hour_apart_costs_a_whole_hour() -> None:
    # Puerto Rico (UTC-4) and St John's (UTC-3:30 in November, UTC-2:30 in July): area code 879.
    assert where.shared_hours(zones("America/Puerto_Rico", "America/St_Johns"), (8, 21), NOVEMBER) == (8, 20)
    assert where.shared_hours(zones("America/Puerto_Rico", "America/St_Johns"), (8, 21), JULY) == (8, 19)


@pytest.mark.parametrize("at", [NOVEMBER, JULY])
def test_shared_hours_are_sending_hours_in_every_zone_of_every_area_code(at: datetime) -> None:
    hours = (8, 21)
    for code in where.known_area_codes():
        lead = where.lead_zones(Profile(area_code=code), DEFAULT)
        start, end = where.shared_hours(lead, hours, at)
        first = at.astimezone(lead[0]).utcoffset()
        assert first is not None
        for zone in lead:
            offset = at.astimezone(zone).utcoffset()
            assert offset is not None
            ahead = (offset - first).total_seconds() / 3600
            for hour in range(start, end):
                for minute in (0, 30, 59):  # primary clock hour:minute is this zone's clock + ahead
                    local = math.floor(hour + minute / 60 + ahead)
                    assert hours[0] <= local < hours[1], (code, zone.key, hour, minute)
