"""GHL's rate limits per location, shared in Redis by every function and every call of a location
(messages, contacts, locations, tags, tasks, custom fields, tokens).

- A sliding window: never more than WINDOW_MAX requests in any WINDOW_SECONDS, or fewer when GHL's
  `X-RateLimit-Max` says so (trial accounts: 25), the last max seen kept per location. A sorted set
  holds each admitted request's time; one Lua call trims it, counts and admits (or says how long
  until the oldest request in the way leaves), so concurrent senders can never admit one too many.
  The window is WINDOW_MARGIN longer than GHL's, so that requests admitted here still fit GHL's
  window when they reach it a little apart (network delay, clocks of different machines).
- GHL's word on waiting: a 429 (its Retry-After, else DEFAULT_RETRY_AFTER) or `X-RateLimit-Remaining`
  at 0 (its interval) blocks the location until then; a shorter wait never cuts a longer one.
- GHL's daily allowance: when `X-RateLimit-Daily-Remaining` reaches 0, nothing more is admitted
  until the next midnight UTC (GHL does not say when its day starts; UTC is the assumption, and a
  429 after an early reset is handled like any other), kept in a key that expires then.

Keys carry the location's hash tag (`lf:{loc}:ghl-*`), so each script touches one cluster slot.
Times come from the limiter's clock (injectable for tests), not Redis's, so tests can fake time.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

from leadflow.ghl.errors import DailyQuotaSpent, RateLimited
from leadflow.lead_state import location_key
from leadflow.redis_client import Cache, cache

WINDOW_MAX = 100  # requests per window per location (GHL's burst limit)
WINDOW_SECONDS = 10.0
WINDOW_MARGIN = 0.5  # seconds added to the window: admitted 10.5 s apart, they reach GHL 10 s apart
DEFAULT_RETRY_AFTER = 1.0  # a 429 without Retry-After
LIMITS_TTL = 30 * 86_400  # how long the last max seen for a location is remembered
DAY = 86_400

_FORMAT = "local function num(x) return string.format('%.6f', x) end\n"

# KEYS: window (zset of admitted times), limits (hash: max, interval, blocked_until), quota (string:
# the time the daily allowance comes back). ARGV: now, default max, default window, margin, member.
# Returns {verdict, value, known max, known interval}: verdict 'ok' (admitted; value: now), 'wait'
# (value: seconds until one may be admitted) or 'quota' (value: when the day's allowance returns).
_TAKE = (
    _FORMAT
    + """
local now = tonumber(ARGV[1])
local limits = redis.call('HMGET', KEYS[2], 'max', 'interval', 'blocked_until')
local known_max, known_interval = limits[1] or '', limits[2] or ''
local quota = tonumber(redis.call('GET', KEYS[3]) or '')
if quota and quota > now then return {'quota', num(quota), known_max, known_interval} end
local blocked = tonumber(limits[3] or '') or 0
if blocked > now then return {'wait', num(blocked - now), known_max, known_interval} end
local max, window = tonumber(ARGV[2]), tonumber(ARGV[3])
local ghl_max, ghl_window = tonumber(known_max), tonumber(known_interval)
if ghl_max and ghl_max >= 1 and ghl_max < max then max = math.floor(ghl_max) end
if ghl_window and ghl_window > window then window = ghl_window end
window = window + tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local n = redis.call('ZCARD', KEYS[1])
if n < max then
  redis.call('ZADD', KEYS[1], now, ARGV[5])
  redis.call('PEXPIRE', KEYS[1], math.ceil(window * 1000))
  return {'ok', num(now), known_max, known_interval}
end
-- the (n - max + 1)th oldest must leave the window before one more fits
local edge = redis.call('ZRANGE', KEYS[1], n - max, n - max, 'WITHSCORES')
return {'wait', num(tonumber(edge[2]) + window - now), known_max, known_interval}
"""
)

# KEYS: limits, quota. ARGV: now, max, interval, blocked until, quota until, limits TTL ('' = no news).
# A block or a spent quota only ever lengthens.
_NOTE = """
local now = tonumber(ARGV[1])
if ARGV[2] ~= '' then redis.call('HSET', KEYS[1], 'max', ARGV[2]) end
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'interval', ARGV[3]) end
if ARGV[4] ~= '' then
  local old = tonumber(redis.call('HGET', KEYS[1], 'blocked_until') or '') or 0
  if tonumber(ARGV[4]) > old then redis.call('HSET', KEYS[1], 'blocked_until', ARGV[4]) end
end
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('EXPIRE', KEYS[1], tonumber(ARGV[6])) end
if ARGV[5] ~= '' then
  local until_ = tonumber(ARGV[5])
  local old = tonumber(redis.call('GET', KEYS[2]) or '') or 0
  if until_ > old and until_ > now then
    redis.call('SET', KEYS[2], ARGV[5], 'PX', math.ceil((until_ - now) * 1000))
  end
end
return 1
"""


@dataclass(frozen=True, slots=True)
class Admission:
    """A request let through: when, and what GHL last said about the location's window."""

    at: float
    known_max: int | None = None
    known_interval: float | None = None


@dataclass(frozen=True, slots=True)
class Heard:
    """What a GHL reply said about the limits: how long to wait before the next request (a 429's
    Retry-After), and when the day's allowance returns if it is spent."""

    wait: float = 0.0
    quota_until: float | None = None


def _keys(resource: str) -> tuple[str, str, str]:
    """The location's admitted requests (zset), what GHL said of its limits (hash), its spent day."""
    window, limits, quota = (location_key(resource, name) for name in ("ghl-window", "ghl-limits", "ghl-quota"))
    return window, limits, quota


def next_reset(now: float) -> float:
    """When GHL's daily allowance is taken to come back: the next midnight UTC."""
    return (now // DAY + 1) * DAY


class RateLimiter:
    """`resource` is what GHL limits: a location id (or `company:<id>` for agency calls)."""

    def __init__(self, store: Cache | None = None, clock: Callable[[], float] = time.time) -> None:
        self.cache = store or cache()
        self._take = self.cache.register_script(_TAKE)
        self._note = self.cache.register_script(_NOTE)
        self._clock = clock

    def clock(self) -> float:
        return self._clock()

    def acquire(
        self, resource: str, sleep: Callable[[float], None] = time.sleep, deadline: float | None = None
    ) -> Admission:
        """Wait for a place in the window until `deadline` (default: now). Raises DailyQuotaSpent,
        or RateLimited when the wait would pass the deadline (then it does not wait at all)."""
        keys = list(_keys(resource))
        deadline = self._clock() if deadline is None else deadline
        while True:
            now = self._clock()
            args = [repr(now), WINDOW_MAX, repr(WINDOW_SECONDS), repr(WINDOW_MARGIN), f"{now!r}:{uuid.uuid4().hex}"]
            verdict, value, known_max, known_interval = self.cache.run(
                lambda r, a=args: self._take(keys=keys, args=a, client=r)  # type: ignore[misc]
            )
            if verdict == "ok":
                return Admission(now, _int(known_max), _float(known_interval))
            if verdict == "quota":
                raise DailyQuotaSpent(float(value))
            wait = float(value)
            if now + wait > deadline:
                raise RateLimited()
            sleep(wait)

    def heard(
        self, resource: str, status: int, headers: Mapping[str, str], admission: Admission | None = None
    ) -> Heard:
        """Take in a GHL reply's X-RateLimit-* headers (and a 429's Retry-After); writes to Redis only
        when they tell something new. Returns what the caller must respect now."""
        now = self._clock()
        ghl_max = _int(headers.get("X-RateLimit-Max"))
        interval_ms = _float(headers.get("X-RateLimit-Interval-Milliseconds"))
        interval = interval_ms / 1000 if interval_ms else None
        known = admission or Admission(now)
        wait, quota_until = 0.0, None
        if status == 429:
            wait = retry_after(headers, now)
        elif headers.get("X-RateLimit-Remaining") == "0":
            wait = max(WINDOW_SECONDS, interval or 0.0)  # GHL's window is full: its interval frees it
        if headers.get("X-RateLimit-Daily-Remaining") == "0":
            quota_until = max(next_reset(now), now + wait)
        news = [
            str(ghl_max) if ghl_max and ghl_max != known.known_max else "",
            repr(interval) if interval and interval != known.known_interval else "",
            repr(now + wait) if wait > 0 else "",
            repr(quota_until) if quota_until else "",
        ]
        if any(news):
            self._write(resource, now, news)
        return Heard(wait if status == 429 else 0.0, quota_until)

    def block(self, resource: str, seconds: float) -> None:
        """GHL says nothing more for `seconds`; a longer wait already recorded stands."""
        now = self._clock()
        self._write(resource, now, ["", "", repr(now + seconds), ""])

    def quota_until(self, resource: str) -> float | None:
        """When the location's spent daily allowance comes back, or None when it is not spent."""
        raw = self.cache.run(lambda r: r.get(_keys(resource)[2]))
        until = _float(raw)
        return until if until and until > self._clock() else None

    def _write(self, resource: str, now: float, news: list[str]) -> None:
        keys = list(_keys(resource)[1:])
        args = [repr(now), *news, LIMITS_TTL]
        self.cache.run(lambda r: self._note(keys=keys, args=args, client=r))


def retry_after(headers: Mapping[str, str], now: float | None = None) -> float:
    """A 429's Retry-After in seconds (a number or an HTTP date), at most a day; else the default."""
    value = headers.get("Retry-After")
    seconds = _float(value)
    if seconds is None and value:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - (time.time() if now is None else now)
        except (TypeError, ValueError):
            seconds = None
    return DEFAULT_RETRY_AFTER if seconds is None else min(max(0.0, seconds), DAY)


def _float(value: str | None) -> float | None:
    try:
        number = float(value) if value not in (None, "") else None
    except ValueError:
        return None
    return number if number is not None and math.isfinite(number) else None


def _int(value: str | None) -> int | None:
    number = _float(value)
    return int(number) if number is not None and number >= 1 else None
