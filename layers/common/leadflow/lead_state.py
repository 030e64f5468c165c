"""Lead state in Redis: one hash per lead, a score index per location, one Lua call per event.

Keys share the hash tag `{location:contact}`, so each lead's keys sit in one cluster slot and its
Lua scripts run there; the score index is one sorted set per location (`{location}` tag):

    lf:{loc:cid}:lead      hash   s:<signal> "count last decayed long", h<utc hour> count,
                                  p:<profile field>, g:paused_until, g:outcome, g:tz_checked,
                                  first_seen, updated
    lf:{loc:cid}:seen:<id> string de-duplication of events, expiring after DEDUPE_TTL
    lf:{loc}:scores        zset   contact id -> likelihood at its last update (an upper bound now)
    lf:locations           set    every location seen

The index holds an upper bound because scores only decay between events: the monitor and the
high-intent list read candidates from it, rescore them now and write the fresher value back.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from leadflow.lead import LeadState, Profile, SignalState
from leadflow.redis_client import Cache, cache
from leadflow.scoring import likelihood
from leadflow.signals import SPEC, TREND_LONG_DECAY_PER_SECOND, Signal

DEDUPE_TTL = 7 * 86_400
LEAD_TTL = 400 * 86_400  # a lead silent for over a year is forgotten
LOCATIONS = "lf:locations"
CANDIDATE_PAGE = 1000

# KEYS: lead hash, then the seen key when the event has an id (no "" placeholder: in cluster mode every
# key must hash to the lead's slot). ARGV: signal ("" for none), at, decay rate, long decay
# rate, utc hour, dedupe ttl, lead ttl, then field/value pairs to set ("" value deletes the field;
# a "max:" prefix on the name keeps the larger number, so a short pause never cuts a longer one).
# Returns 0 for a duplicate, else the lead's fields after the update.
_RECORD = """
if KEYS[2] and not redis.call('SET', KEYS[2], '1', 'NX', 'EX', tonumber(ARGV[6])) then
  return 0
end
local lead = KEYS[1]
local sig, at = ARGV[1], tonumber(ARGV[2])
if sig ~= '' then
  local rate, lrate = tonumber(ARGV[3]), tonumber(ARGV[4])
  local field = 's:' .. sig
  local cur = redis.call('HGET', lead, field)
  local n, last, d, l = 0, 0, 0, 0
  if cur then
    local a, b, c, e = string.match(cur, '(%S+) (%S+) (%S+) (%S+)')
    n, last, d, l = tonumber(a), tonumber(b), tonumber(c), tonumber(e)
  end
  if n == 0 then
    d, l, last = 1, 1, at
  elseif at >= last then
    local gap = at - last
    d = d * math.exp(-rate * gap) + 1
    l = l * math.exp(-lrate * gap) + 1
    last = at
  else
    local gap = last - at
    d = d + math.exp(-rate * gap)
    l = l + math.exp(-lrate * gap)
  end
  redis.call('HSET', lead, field, string.format('%d %.3f %.17g %.17g', n + 1, last, d, l))
  redis.call('HINCRBY', lead, 'h' .. ARGV[5], 1)
end
for i = 8, #ARGV, 2 do
  local name, value = ARGV[i], ARGV[i + 1]
  if string.sub(name, 1, 4) == 'max:' then
    name = string.sub(name, 5)
    local cur = tonumber(redis.call('HGET', lead, name) or '')
    if cur == nil or cur < tonumber(value) then redis.call('HSET', lead, name, value) end
  elseif value == '' then
    redis.call('HDEL', lead, name)
  else
    redis.call('HSET', lead, name, value)
  end
end
redis.call('HSETNX', lead, 'first_seen', ARGV[2])
redis.call('HSET', lead, 'updated', ARGV[2])
redis.call('EXPIRE', lead, tonumber(ARGV[7]))
return redis.call('HGETALL', lead)
"""


def lead_prefix(location_id: str, contact_id: str) -> str:
    return f"lf:{{{location_id}:{contact_id}}}"


def lead_key(location_id: str, contact_id: str) -> str:
    return lead_prefix(location_id, contact_id) + ":lead"


def location_key(location_id: str, name: str) -> str:
    """A key of a whole location (the `{location}` hash tag): its score index, stats, outbox, ..."""
    return f"lf:{{{location_id}}}:{name}"


def index_key(location_id: str) -> str:
    return location_key(location_id, "scores")


@dataclass(frozen=True, slots=True)
class Recorded:
    state: LeadState
    likelihood: float


def encode_profile(profile: Mapping[str, Any]) -> dict[str, str]:
    """Profile attributes (as named on Profile) to hash fields; None clears a field."""
    out: dict[str, str] = {}
    for name, value in profile.items():
        if name not in Profile.__slots__:
            raise ValueError(f"unknown profile field {name!r}")
        if value is None:
            out[f"p:{name}"] = ""
        elif isinstance(value, bool):
            out[f"p:{name}"] = "1" if value else "0"
        elif isinstance(value, frozenset | set | list | tuple):
            out[f"p:{name}"] = ",".join(sorted(value)) or ""
        else:
            out[f"p:{name}"] = str(value)
    return out


_BOOL_FIELDS = {"has_phone", "has_email", "dnd"}


def decode_state(fields: Mapping[str, str]) -> LeadState:
    state = LeadState()
    profile = state.profile
    for name, value in fields.items():
        kind = name[:2]
        if kind == "s:":
            n, last, decayed, long = value.split(" ")
            state.signals[Signal(name[2:])] = SignalState(int(n), float(last), float(decayed), float(long))
        elif kind == "p:":
            attr = name[2:]
            if attr in _BOOL_FIELDS:
                setattr(profile, attr, value == "1")
            elif attr == "dnd_channels":
                profile.dnd_channels = frozenset(value.split(","))
            elif attr in Profile.__slots__:
                setattr(profile, attr, value)
        elif name[0] == "h" and name[1:].isdigit():
            state.hours_utc[int(name[1:]) % 24] = int(value)
        elif name == "g:paused_until":
            state.paused_until = float(value)
        elif name == "g:outcome":
            state.outcome = value
        elif name == "g:tz_checked":
            state.tz_checked = float(value)
        elif name == "first_seen":
            state.first_seen = float(value)
    return state


def encode_state(state: LeadState) -> dict[str, str]:
    """The hash fields of a lead (decode_state's inverse, in the Lua script's format): for bulk loads."""
    fields = {
        f"s:{signal.value}": f"{s.count} {s.last:.3f} {s.decayed!r} {s.long!r}"
        for signal, s in state.signals.items()
        if s.count
    }
    fields |= {f"h{hour}": str(n) for hour, n in enumerate(state.hours_utc) if n}
    profile = state.profile
    fields |= {k: v for k, v in encode_profile({n: getattr(profile, n) for n in Profile.__slots__}).items() if v}
    if state.paused_until:
        fields["g:paused_until"] = repr(state.paused_until)
    if state.outcome:
        fields["g:outcome"] = state.outcome
    if state.first_seen:
        fields["first_seen"] = repr(state.first_seen)
    if state.tz_checked:
        fields["g:tz_checked"] = repr(state.tz_checked)
    return fields


def _pairs(fields: Any) -> dict[str, str]:
    """HGETALL as a dict, whether the client returned a dict or Lua's flat list."""
    if isinstance(fields, dict):
        return fields
    return dict(zip(fields[0::2], fields[1::2], strict=True))


class LeadStore:
    """Everything leadflow keeps about leads, over one Cache (and so one circuit breaker)."""

    def __init__(self, store: Cache | None = None) -> None:
        self.cache = store or cache()
        self._record = self.cache.register_script(_RECORD)

    def record(
        self,
        location_id: str,
        contact_id: str,
        *,
        signal: Signal | None = None,
        at: float | None = None,
        event_id: str | None = None,
        fields: Mapping[str, str] | None = None,
        now: float | None = None,
    ) -> Recorded | None:
        """Record one event atomically: de-duplicate by `event_id`, add the signal, set fields.

        Returns None for a duplicate; else the lead's new state and its likelihood now, which is
        also written to the location's score index.
        """
        now = time.time() if now is None else now
        at = now if at is None else at
        keys = [lead_key(location_id, contact_id)]
        if event_id:
            keys.append(f"{lead_prefix(location_id, contact_id)}:seen:{event_id}")
        args: list[Any] = [
            signal.value if signal else "",
            repr(at),
            repr(SPEC[signal].decay_per_second) if signal else "0",
            repr(TREND_LONG_DECAY_PER_SECOND),
            int(at // 3600) % 24,
            DEDUPE_TTL,
            LEAD_TTL,
        ]
        for name, value in (fields or {}).items():
            args += [name, value]
        result = self.cache.run(lambda r: self._record(keys=keys, args=args, client=r))
        if not result:
            return None
        state = decode_state(_pairs(result))
        score = likelihood(state, now)
        self._index({location_id: {contact_id: score}})
        return Recorded(state, score)

    def _index(self, scores: Mapping[str, Mapping[str, float]]) -> None:
        def write(r: Any) -> None:
            pipe = r.pipeline(transaction=False)
            for location_id, members in scores.items():
                if members:
                    pipe.zadd(index_key(location_id), dict(members))
            pipe.sadd(LOCATIONS, *scores.keys())
            pipe.execute()

        self.cache.run(write)

    def store_many(self, location_id: str, states: Mapping[str, LeadState], now: float) -> None:
        """Write whole lead states and their index entries in one round trip (bulk imports, benches)."""
        scores = {cid: likelihood(state, now) for cid, state in states.items()}

        def write(r: Any) -> None:
            pipe = r.pipeline(transaction=False)
            for cid, state in states.items():
                pipe.hset(lead_key(location_id, cid), mapping=encode_state(state))
            pipe.execute()

        self.cache.run(write)
        self._index({location_id: scores})

    def set_fields(self, location_id: str, contact_id: str, fields: Mapping[str, str]) -> None:
        """Set hash fields of a known lead (guardrail state such as g:paused_until)."""
        key = lead_key(location_id, contact_id)
        self.cache.run(lambda r: r.hset(key, mapping=dict(fields)))

    def load(self, location_id: str, contact_id: str) -> LeadState | None:
        fields = self.cache.run(lambda r: r.hgetall(lead_key(location_id, contact_id)))
        return decode_state(fields) if fields else None

    def load_many(self, location_id: str, contact_ids: Iterable[str]) -> dict[str, LeadState]:
        """Many leads in one round trip (a pipeline; in cluster mode redis-py groups it by node)."""
        ids = list(contact_ids)
        if not ids:
            return {}

        def read(r: Any) -> list[Any]:
            pipe = r.pipeline(transaction=False)
            for contact_id in ids:
                pipe.hgetall(lead_key(location_id, contact_id))
            return list(pipe.execute())

        rows = self.cache.run(read)
        return {cid: decode_state(fields) for cid, fields in zip(ids, rows, strict=True) if fields}

    def locations(self) -> list[str]:
        return sorted(self.cache.run(lambda r: r.smembers(LOCATIONS)))

    def candidates(self, location_id: str, min_likelihood: float) -> Iterable[list[tuple[str, float]]]:
        """Pages of (contact id, indexed likelihood) at or above the threshold, highest first."""
        key = index_key(location_id)
        offset = 0
        while True:
            page: list[tuple[str, float]] = self.cache.run(
                lambda r, o=offset: r.zrange(  # type: ignore[misc]
                    key, "+inf", min_likelihood, desc=True, byscore=True, offset=o, num=CANDIDATE_PAGE, withscores=True
                )
            )
            if not page:
                return
            yield [(str(cid), float(score)) for cid, score in page]
            if len(page) < CANDIDATE_PAGE:
                return
            offset += CANDIDATE_PAGE

    def high_intent(
        self, location_id: str, min_likelihood: float, limit: int, now: float | None = None
    ) -> list[tuple[str, LeadState, float]]:
        """The `limit` leads most likely to convert now, at or above `min_likelihood`, highest first.

        Candidates come from the index in descending order of an upper bound, so the scan stops once
        `limit` leads score at least the next candidate's bound. Rescored values go back to the index.
        """
        now = time.time() if now is None else now
        found: list[tuple[str, LeadState, float]] = []
        fresh: dict[str, float] = {}
        gone: list[str] = []
        for page in self.candidates(location_id, min_likelihood):
            states = self.load_many(location_id, [cid for cid, _ in page])
            gone += [cid for cid, _ in page if cid not in states]
            for cid, state in states.items():
                score = fresh[cid] = likelihood(state, now)
                if score >= min_likelihood:
                    found.append((cid, state, score))
            found.sort(key=lambda item: -item[2])
            if len(found) >= limit and found[limit - 1][2] >= page[-1][1]:
                break
        self.refresh_index(location_id, fresh, gone)
        return found[:limit]

    def refresh_index(self, location_id: str, fresh: Mapping[str, float], gone: list[str]) -> None:
        """After a scan (never during one: it would shift the pages), tighten the index."""
        if not fresh and not gone:
            return

        def write(r: Any) -> None:
            pipe = r.pipeline(transaction=False)
            if fresh:
                pipe.zadd(index_key(location_id), dict(fresh), xx=True)
            if gone:
                pipe.zrem(index_key(location_id), *gone)
            pipe.execute()

        self.cache.run(write)

    def erase(self, location_id: str, contact_id: str) -> None:
        """Forget a lead (ContactDelete): its hash, history, send log and index entry."""
        prefix = lead_prefix(location_id, contact_id)

        def delete(r: Any) -> None:
            r.delete(*(prefix + suffix for suffix in (":lead", ":messages", ":sends", ":pending")))
            r.zrem(index_key(location_id), contact_id)

        self.cache.run(delete)
