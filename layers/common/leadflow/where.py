"""Where a lead is: the IANA zones whose clocks decide when it may be messaged.

The contract: the timezone GHL gave (the profile's); without one, the phone's area code (US/Canada
area codes to IANA zones; an area code spanning several zones keeps them all, and sending hours
must hold in every one of them); only then DEFAULT_TIMEZONE. The first zone is the lead's primary
zone: its score's `timezone` and the clock of its contact window.

Area codes come from libphonenumber's prefix -> zones table (`phonenumbers`, its `tzdata` package),
looked up by the prefix "1" + area code and every finer prefix under it (some area codes, 310 for
one, are listed only by exchange; 850's Central exchanges are listed under its Eastern default).
Only the area code is kept in a profile, never the number.

Cold starts: the table is imported on the first lead without a GHL timezone, once per process
(`import phonenumbers` loads the whole parsing library first: about 35 ms measured here, 23 ms on
top of what a handler already imports), never at init.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from leadflow.lead import Profile

NANP = "1"  # the North American Numbering Plan's country code
AREA_CODE_DIGITS = 3


@functools.lru_cache(maxsize=1024)
def zone_of(name: str | None, default: str) -> ZoneInfo:
    """The zone named `name`, or the default when it has none or an unknown one."""
    return (_zone(name) if name else None) or ZoneInfo(default)


@functools.lru_cache(maxsize=1024)
def _zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ValueError, KeyError, OSError):  # ZoneInfoNotFoundError is a KeyError
        return None


def lead_zones(profile: Profile, default: str) -> tuple[ZoneInfo, ...]:
    """The lead's zones, primary first: GHL's timezone, else its area code's zones, else the default."""
    return _lead_zones(profile.timezone, profile.area_code, default)


@functools.lru_cache(maxsize=4096)
def _lead_zones(timezone: str | None, area_code: str | None, default: str) -> tuple[ZoneInfo, ...]:
    own = _zone(timezone) if timezone else None
    if own:
        return (own,)
    zones = tuple(zone for zone in map(_zone, area_code_zones(area_code)) if zone)
    return zones or (zone_of(None, default),)


def area_code_zones(area_code: str | None) -> tuple[str, ...]:
    """The IANA zones of a North American area code, primary first; () when it is not known."""
    return _area_codes().get(area_code or "", ())


def known_area_codes() -> frozenset[str]:
    return frozenset(_area_codes())


def shared_hours(zones: Sequence[ZoneInfo], hours: tuple[int, int], at: datetime) -> tuple[int, int]:
    """`hours` on the first zone's clock, narrowed so that every hour in them is inside `hours` on
    every other zone's clock too (at `at`): 850's 8-21 Central and Eastern is 9-21 Eastern.
    The guardrail checks each zone itself; this is for windows drawn on the primary zone's clock."""
    if len(zones) < 2:
        return hours
    return _shared_hours(tuple(zones), hours, int(at.timestamp() // 1800))


@functools.lru_cache(maxsize=1024)
def _shared_hours(zones: tuple[ZoneInfo, ...], hours: tuple[int, int], half_hour: int) -> tuple[int, int]:
    """shared_hours at a UTC half hour (offsets change on half hours at most): cached, as the
    monitor scores many leads of the same area codes."""
    at = datetime.fromtimestamp(half_hour * 1800, UTC)
    first = at.astimezone(zones[0]).utcoffset()
    ahead = [
        (at.astimezone(zone).utcoffset() - first).total_seconds() / 3600  # type: ignore[operator]
        for zone in zones[1:]
    ]
    start = hours[0] + math.ceil(max(0.0, -min(ahead)))  # a zone behind starts later on our clock
    end = hours[1] - math.ceil(max(0.0, *ahead))  # a zone ahead ends earlier on our clock
    return start, max(start, end)


# ---------------------------------------------------------------------------------------------
# libphonenumber's table


@functools.cache
def _area_codes() -> dict[str, tuple[str, ...]]:
    """Area code -> zones, from every prefix "1" + area code [+ more digits]. The area code's own
    entry (its zones for any exchange not listed apart) comes first, then the zones of its listed
    exchanges, most listed first. The country-wide "1" entry (every NANP zone) is not an answer."""
    own: dict[str, tuple[str, ...]] = {}
    listed: dict[str, dict[str, int]] = {}
    for prefix, zones in _timezone_data().items():
        if len(prefix) < 1 + AREA_CODE_DIGITS or not prefix.startswith(NANP):
            continue
        code = prefix[1 : 1 + AREA_CODE_DIGITS]
        if len(prefix) == 1 + AREA_CODE_DIGITS:
            own[code] = tuple(zones)
            continue
        counts = listed.setdefault(code, {})
        for zone in zones:
            counts[zone] = counts.get(zone, 0) + 1
    table: dict[str, tuple[str, ...]] = {}
    for code in own.keys() | listed.keys():
        first = own.get(code, ())
        counts = listed.get(code, {})
        rest = sorted((zone for zone in counts if zone not in first), key=lambda zone: (-counts[zone], zone))
        table[code] = first + tuple(rest)
    return table


def _timezone_data() -> Mapping[str, Sequence[str]]:
    """libphonenumber's prefix -> zones table (every country's): imported on first use only."""
    from phonenumbers.tzdata import TIMEZONE_DATA

    return TIMEZONE_DATA
