"""Lead state in Redis: one hash per lead, a score index per location, one Lua call per event.

Keys share the hash tag `{location:contact}`, so each lead's keys sit in one cluster slot and its
Lua scripts run there; the score index is one sorted set per location (`{location}` tag):

    lf:{loc:cid}:lead      hash   s:<signal> "count last decayed long", h<utc hour> count,
                                  p:<profile field> and tp:<its event time>, g:paused_until,
                                  g:appt:<appointment id> (booked) and tg:appt:<id>, g:outcome,
                                  g:tz_checked, first_seen, updated
    lf:{loc:cid}:seen:<id> string de-duplication of events, expiring after DEDUPE_TTL
    lf:{loc}:scores        zset   contact id -> likelihood at its last update (an upper bound now)
    lf:{loc}:expires       zset   contact id -> when its data ends (swept from the index by the monitor)
    lf:locations           set    every location seen
    lf:delivery:{<hash>}   string the location a delivery was first recorded under (global de-duplication)

The index holds an upper bound because scores only decay between events: the monitor and the
high-intent list read candidates from it, rescore them now and write the fresher value back.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from redis.exceptions import NoScriptError

from leadflow.config import settings
from leadflow.errors import InvalidInput
from leadflow.lead import LeadState, Profile, SignalState
from leadflow.redis_client import Cache, cache
from leadflow.scoring import likelihood
from leadflow.signals import LINK_SCALE, SPEC, TREND_LONG_DECAY_PER_SECOND, Signal

DEDUPE_TTL = 7 * 86_400
LOCATIONS = "lf:locations"
CANDIDATE_PAGE = 1000

# KEYS: the lead hash, its last write-back (`:synced`) and its write-back window (`:sync-queued`),
# both read back for writeback's decision, then the seen key when the event has an id, then
# (standalone only) the location's score index, expiry index, set of locations and write-back
# waiting set. In cluster mode every key must hash to the lead's slot, so the location's keys are
# left out and the caller pipelines the index write instead.
# ARGV: signal ("" for none), at, decay rate, long decay rate, utc hour, dedupe ttl, lead ttl, call
# token, "1" when a seen key is given, now, when the lead's data ends, contact id, location id, then field/value
# pairs to set ("" value deletes the field; a "max:" prefix on the name keeps the larger number, so a
# short pause never cuts a longer one).
# A profile field (p:<name>) or an appointment's booking (g:appt:<id>) keeps the time of the event
# that set it (t<field>) and takes a value only from an event at least as new: a late, older event
# never overwrites a newer one (a late cancel never lifts a newer booking's pause).
# Returns {1, fields, synced, waiting} when this call recorded the event, {0, ...} for a duplicate;
# `waiting` is 1 when the lead's write-back window is held and the lead already in the waiting set
# (standalone), so nothing is left for the caller to queue.
# The seen key holds the call's token: redis-py re-sends a command after a read timeout although the
# first one ran, and that retry gets the first call's answer (recorded), with nothing applied twice.
# With the index keys, the lead's likelihood at `now` goes to the index as an upper bound: scoring's
# formula (scoring.likelihood) over the same fields and constants, rounded up to the next tenth.
_RECORD = """
local lead, has_seen = KEYS[1], ARGV[9] == '1'
local function finish(fresh)
  local fields = redis.call('HGETALL', lead)
  local index, waiting = has_seen and 5 or 4, 0
  if KEYS[index] then
    local now, sum = tonumber(ARGV[10]), 0
    for i = 1, #fields, 2 do
      local k = SCORING[fields[i]]
      if k then
        local n, last, d = string.match(fields[i + 1], '(%S+) (%S+) (%S+)')
        local age = math.max(now - tonumber(last), 0)
        if tonumber(n) > 0 then sum = sum + k[1] * (1 - math.exp(-(tonumber(d) * math.exp(-k[2] * age)) / k[3])) end
      end
    end
    local bound = math.min(math.ceil((100 * (1 - math.exp(-sum / LINK_SCALE)) + 1e-9) * 10) / 10, 100)
    redis.call('ZADD', KEYS[index], bound, ARGV[12])
    redis.call('ZADD', KEYS[index + 1], tonumber(ARGV[11]), ARGV[12])
    redis.call('SADD', KEYS[index + 2], ARGV[13])
    if redis.call('EXISTS', KEYS[3]) == 1 and redis.call('ZSCORE', KEYS[index + 3], ARGV[12]) then waiting = 1 end
  end
  return {fresh, fields, redis.call('HMGET', KEYS[2], 'score', 'intent'), waiting}
end
if has_seen then
  local prior = redis.call('SET', KEYS[4], ARGV[8], 'NX', 'GET', 'EX', tonumber(ARGV[6]))
  if prior then return finish(prior == ARGV[8] and 1 or 0) end
end
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
for i = 14, #ARGV, 2 do
  local name, value = ARGV[i], ARGV[i + 1]
  local newest = true
  if string.sub(name, 1, 4) == 'max:' then
    name = string.sub(name, 5)
    local cur = tonumber(redis.call('HGET', lead, name) or '')
    newest = cur == nil or cur < tonumber(value)
  elseif string.sub(name, 1, 2) == 'p:' or string.sub(name, 1, 7) == 'g:appt:' then
    local set_at = tonumber(redis.call('HGET', lead, 't' .. name) or '')
    newest = set_at == nil or set_at <= at
    if newest then redis.call('HSET', lead, 't' .. name, ARGV[2]) end
  end
  if newest and value == '' then
    redis.call('HDEL', lead, name)
  elseif newest then
    redis.call('HSET', lead, name, value)
  end
end
redis.call('HSETNX', lead, 'first_seen', ARGV[2])
if (tonumber(redis.call('HGET', lead, 'updated') or '') or 0) < at then redis.call('HSET', lead, 'updated', ARGV[2]) end
redis.call('EXPIRE', lead, tonumber(ARGV[7]))
return finish(1)
"""


def _scoring_table() -> str:
    """scoring's constants as a Lua table (s:<signal> -> weight, decay per second, saturation)."""
    rows = ", ".join(
        f"['s:{signal.value}'] = {{{spec.weight!r}, {spec.decay_per_second!r}, {spec.saturation!r}}}"
        for signal, spec in SPEC.items()
    )
    return f"local SCORING = {{{rows}}}\nlocal LINK_SCALE = {LINK_SCALE!r}\n"


_RECORD = _scoring_table() + _RECORD


MAX_ID = 128
# Ids are data, not syntax: the characters that delimit keys and hash tags are escaped, so two
# different (location, contact) pairs never share a key. Ordinary ids are left as they are.
_ESCAPES = str.maketrans({"%": "%25", ":": "%3A", "{": "%7B", "}": "%7D"})


def key_part(value: str) -> str:
    """An id as it appears in a key; over MAX_ID characters is refused, never cut into another id."""
    if len(value) > MAX_ID:
        raise InvalidInput(f"id over {MAX_ID} characters: {value[:24]}...")
    return value.translate(_ESCAPES)


def lead_prefix(location_id: str, contact_id: str) -> str:
    return f"lf:{{{key_part(location_id)}:{key_part(contact_id)}}}"


def lead_key(location_id: str, contact_id: str) -> str:
    return lead_prefix(location_id, contact_id) + ":lead"


def location_key(location_id: str, name: str) -> str:
    """A key of a whole location (the `{location}` hash tag): its score index, stats, outbox, ..."""
    return f"lf:{{{key_part(location_id)}}}:{name}"


def window_key(location_id: str, contact_id: str) -> str:
    """writeback's coalescing window: a sync job was queued for the lead lately."""
    return lead_prefix(location_id, contact_id) + ":sync-queued"


def waiting_key(location_id: str) -> str:
    """writeback's waiting set: leads whose write-back found their window held, for the monitor."""
    return location_key(location_id, "sync-waiting")


def index_key(location_id: str) -> str:
    return location_key(location_id, "scores")


def expiry_key(location_id: str) -> str:
    """When each index entry's lead ends (its last event + LEAD_TTL_DAYS): the monitor sweeps it."""
    return location_key(location_id, "expires")


@dataclass(frozen=True, slots=True)
class Recorded:
    state: LeadState
    likelihood: float
    duplicate: bool = False  # the event was recorded before; state and index are as it left them
    synced: tuple[float, str] | None = None  # the lead's last write-back to GHL (score, intent), if any
    waiting: bool = False  # its write-back window is held and it waits for the monitor already (standalone)


@dataclass(frozen=True, slots=True)
class Event:
    """One event to record on a lead: its signal (if any) at `at`, hash fields to set, and the id
    that de-duplicates it."""

    location_id: str
    contact_id: str
    signal: Signal | None = None
    at: float | None = None
    event_id: str | None = None
    fields: Mapping[str, str] = field(default_factory=dict)


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


_BOOL_FIELDS = {"has_phone", "has_email", "dnd", "opted_out"}
APPOINTMENT = "g:appt:"  # + an appointment's id: the field is there while the appointment is booked


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
        elif name.startswith(APPOINTMENT):
            state.appointments |= {name[len(APPOINTMENT) :]}
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
    fields |= {APPOINTMENT + appointment: "1" for appointment in state.appointments}
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
        self._sha = hashlib.sha1(_RECORD.encode(), usedforsecurity=False).hexdigest()  # the script's name in Redis

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
    ) -> Recorded:
        """Record one event (see `record_many`)."""
        event = Event(location_id, contact_id, signal, at, event_id, fields or {})
        return self.record_many([event], now)[0]

    def record_many(self, events: Sequence[Event], now: float | None = None) -> list[Recorded]:
        """Record events atomically each: de-duplicate by `event_id`, add the signal, set fields.

        One pipelined round trip of one script call per event, which also writes the location's
        score index (standalone); in cluster mode the index keys live in other slots, so a second
        round trip writes the index for all of them. Each result holds the lead's state and its
        likelihood now, after its event (events of one lead apply in order). The index is written
        for a duplicate too (`duplicate=True`): an event whose first delivery lost its index write
        (cluster mode, Redis gone between the two round trips) reaches the index when it comes again.
        """
        if not events:
            return []
        now = time.time() if now is None else now
        ttl = settings().lead_ttl_days * 86_400
        calls = [self._call(event, now, ttl) for event in events]
        replies = self.cache.run(lambda r: self._run_scripts(r, calls))
        recorded = []
        for fresh, fields_now, synced, waiting in replies:
            state = decode_state(_pairs(fields_now))
            score, intent = synced
            last = (float(score), str(intent)) if score is not None and intent else None
            recorded.append(Recorded(state, likelihood(state, now), not fresh, last, bool(waiting)))
        if self.cache.cluster:
            scores: dict[str, dict[str, float]] = {}
            for event, result in zip(events, recorded, strict=True):
                scores.setdefault(event.location_id, {})[event.contact_id] = result.likelihood
            self._index(scores, now + ttl)
        return recorded

    def _call(self, event: Event, now: float, ttl: int) -> tuple[list[str], list[Any]]:
        """The record script's keys and arguments for one event."""
        prefix = lead_prefix(event.location_id, event.contact_id)
        keys = [prefix + ":lead", prefix + ":synced", window_key(event.location_id, event.contact_id)]
        if event.event_id:
            keys.append(f"{prefix}:seen:{event.event_id}")
        if not self.cache.cluster:
            keys += [index_key(event.location_id), expiry_key(event.location_id), LOCATIONS]
            keys.append(waiting_key(event.location_id))
        at = now if event.at is None else event.at
        signal = event.signal
        args: list[Any] = [
            signal.value if signal else "",
            repr(at),
            repr(SPEC[signal].decay_per_second) if signal else "0",
            repr(TREND_LONG_DECAY_PER_SECOND),
            int(at // 3600) % 24,
            DEDUPE_TTL,
            ttl,
            uuid.uuid4().hex,  # this call: its own retry is not a duplicate
            "1" if event.event_id else "",
            repr(now),
            repr(now + ttl),
            event.contact_id,
            event.location_id,
        ]
        for name, value in event.fields.items():
            args += [name, value]
        return keys, args

    def _run_scripts(self, r: Any, calls: list[tuple[list[str], list[Any]]]) -> list[Any]:
        """EVALSHA of the record script per call, pipelined (redis-py sends a cluster pipeline to each
        node at once). A node that lacks the script (a replica just promoted) answers NOSCRIPT
        without running anything: the script is loaded and those calls alone are sent again."""
        replies = self._pipeline(r, calls)
        missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if missing:
            r.script_load(_RECORD)
            for i, reply in zip(missing, self._pipeline(r, [calls[i] for i in missing]), strict=True):
                replies[i] = reply
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return replies

    def _pipeline(self, r: Any, calls: list[tuple[list[str], list[Any]]]) -> list[Any]:
        pipe = r.pipeline(transaction=False)
        for keys, args in calls:
            pipe.execute_command("EVALSHA", self._sha, len(keys), *keys, *args)  # pipe.evalsha: blocked in a cluster
        return list(pipe.execute(raise_on_error=False))

    def _index(self, scores: Mapping[str, Mapping[str, float]], expires: float) -> None:
        def write(r: Any) -> None:
            pipe = r.pipeline(transaction=False)
            for location_id, members in scores.items():
                if members:
                    pipe.zadd(index_key(location_id), dict(members))
                    pipe.zadd(expiry_key(location_id), dict.fromkeys(members, expires))
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
        self._index({location_id: scores}, now + settings().lead_ttl_days * 86_400)

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

    def claim_delivery(self, delivery_id: str, location_id: str) -> bool:
        """The location a delivery was first recorded under; False when it came before under another."""
        key = "lf:delivery:{" + hashlib.sha256(delivery_id.encode()).hexdigest()[:32] + "}"
        prior = self.cache.run(lambda r: r.set(key, location_id, nx=True, get=True, ex=DEDUPE_TTL))
        return prior is None or prior == location_id

    def sweep_expired(self, location_id: str, now: float) -> int:
        """Remove the index entries of leads whose data has ended; how many were removed."""
        expires, index = expiry_key(location_id), index_key(location_id)

        def sweep(r: Any) -> int:
            ended = r.zrange(expires, "-inf", now, byscore=True, offset=0, num=CANDIDATE_PAGE)
            if ended:
                pipe = r.pipeline(transaction=False)
                pipe.zrem(index, *ended)
                pipe.zrem(expires, *ended)
                pipe.execute()
            return len(ended)

        removed = 0
        while (n := self.cache.run(sweep)) > 0:
            removed += n
            if n < CANDIDATE_PAGE:
                break
        return removed

    def erase(self, location_id: str, contact_id: str) -> None:
        """Forget a lead (ContactDelete): its hash, history, send log and index entry."""
        prefix = lead_prefix(location_id, contact_id)

        def delete(r: Any) -> None:
            suffixes = (":lead", ":messages", ":sends", ":pending", ":jobs", ":own", ":handoffs", ":synced")
            r.delete(*(prefix + suffix for suffix in suffixes), window_key(location_id, contact_id))
            r.zrem(index_key(location_id), contact_id)
            r.zrem(expiry_key(location_id), contact_id)
            r.zrem(waiting_key(location_id), contact_id)

        self.cache.run(delete)
