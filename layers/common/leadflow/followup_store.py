"""What leadflow keeps about follow-ups in Redis, beside each lead's state (same hash tag):

lf:{loc:cid}:sends      zset   job id -> epoch of each reserved send (the daily cap and 24 h limit)
lf:{loc:cid}:handoffs   zset   the same for agent handoff tasks (one a day; not messages, so not under the cap)
lf:{loc:cid}:jobs       hash   job id -> its state: reserved -> sending:<attempt> -> sent | failed | skipped
lf:{loc:cid}:pending    string the job in flight for the lead (one at a time, from monitor/fast path)
lf:{loc:cid}:job:<id>   string a job id ever queued (a repeated monitor run queues nothing new)
lf:{loc:cid}:messages   list   the lead's message history, newest first (JSON), ending with the lead

A job's state is written before each act: `reserved` with its place under the cap, `sending:<attempt>`
right before the GHL request. A job found in `sending` was interrupted with its outcome unknown and is
never sent again.
lf:{loc}:outbox         list   dry-run messages, newest first (JSON)
lf:{loc}:stats          hash   queued, sent, failed, skipped:<reason>
lf:monitoring           string "0" when monitoring is switched off
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from leadflow.guardrails import SendCounts
from leadflow.lead_state import lead_prefix, location_key
from leadflow.redis_client import Cache, cache

HISTORY_LIMIT = 200
OUTBOX_LIMIT = 1000
DEFAULT_TTL = 180 * 86_400  # LEAD_TTL_DAYS' default
PENDING_TTL = 6 * 3600  # a job lost in flight frees its lead after this
JOB_MARK_TTL = 3 * 86_400
JOBS_TTL = 3 * 86_400  # job states outlive every redelivery of their SQS message
MONITORING = "lf:monitoring"
RESERVED, SENDING = "reserved", "sending"
SENDS, HANDOFFS = ":sends", ":handoffs"  # the ledgers `reserve` counts in
ENDED = ("sent", "failed", "skipped", "handed_off")

# KEYS: sends, jobs. ARGV: job id, now, day start, max per day, max per 24 h (0: none).
# Returns "reserved" (now, or already by this job), "over_cap", or the state the job reached before
# (sending:..., sent, ...), which is never reserved again. Atomic: no number of concurrent senders
# can exceed the cap, and a retried call answers as the first did.
_RESERVE = """
local sends, jobs, job, now = KEYS[1], KEYS[2], ARGV[1], tonumber(ARGV[2])
local state = redis.call('HGET', jobs, job)
if state and state ~= 'reserved' then return state end
redis.call('ZREMRANGEBYSCORE', sends, '-inf', now - 3 * 86400)
if not redis.call('ZSCORE', sends, job) then
  if redis.call('ZCOUNT', sends, ARGV[3], '+inf') >= tonumber(ARGV[4]) then return 'over_cap' end
  local per24 = tonumber(ARGV[5])
  if per24 > 0 and redis.call('ZCOUNT', sends, now - 86400, '+inf') >= per24 then return 'over_cap' end
  redis.call('ZADD', sends, now, job)
  redis.call('EXPIRE', sends, 3 * 86400)
end
redis.call('HSET', jobs, job, 'reserved')
redis.call('EXPIRE', jobs, tonumber(ARGV[6]))
return 'reserved'
"""

# KEYS: jobs. ARGV: job id, attempt token. reserved (or this attempt's own mark) -> sending:<token>.
# Returns 1 when this attempt may send, 0 when another attempt holds or ended the job.
_BEGIN_SEND = """
local state = redis.call('HGET', KEYS[1], ARGV[1])
local mine = 'sending:' .. ARGV[2]
if state ~= 'reserved' and state ~= mine then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], mine)
return 1
"""

# KEYS: sends, jobs. ARGV: job id, attempt token. A send that certainly did not happen gives its
# place under the cap back and its state, when this attempt still holds the job.
_UNRESERVE = """
local state = redis.call('HGET', KEYS[2], ARGV[1])
if state ~= 'reserved' and state ~= 'sending:' .. ARGV[2] then return 0 end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
return 1
"""

# KEYS: pending. ARGV: job id. Frees the lead if this job holds it (the value is "<job id> <token>").
_RELEASE = """
local held = redis.call('GET', KEYS[1])
if held and string.sub(held, 1, #ARGV[1] + 1) == ARGV[1] .. ' ' then return redis.call('DEL', KEYS[1]) end
return 0
"""


def _keys(location_id: str, contact_id: str) -> tuple[str, str, str, str]:
    prefix = lead_prefix(location_id, contact_id)
    return prefix + ":sends", prefix + ":pending", prefix + ":job:", prefix + ":messages"


def _jobs_key(location_id: str, contact_id: str) -> str:
    return lead_prefix(location_id, contact_id) + ":jobs"


def _stats_key(location_id: str) -> str:
    return location_key(location_id, "stats")


def outbox_key(location_id: str) -> str:
    return location_key(location_id, "outbox")


@dataclass(frozen=True, slots=True)
class LeadFollowups:
    counts: SendCounts
    pending: bool


class FollowupStore:
    def __init__(self, store: Cache | None = None) -> None:
        self.cache = store or cache()
        self._reserve = self.cache.register_script(_RESERVE)
        self._release = self.cache.register_script(_RELEASE)
        self._begin_send = self.cache.register_script(_BEGIN_SEND)
        self._unreserve = self.cache.register_script(_UNRESERVE)

    # Guardrail inputs, many leads in one round trip.
    def followups(self, location_id: str, leads: Mapping[str, float], now: float) -> dict[str, LeadFollowups]:
        """Per lead (contact id -> its local day start): send counts and whether a job is pending."""
        ids = list(leads)

        def read(r: Any) -> list[Any]:
            pipe = r.pipeline(transaction=False)
            for cid in ids:
                sends, pending, _, _ = _keys(location_id, cid)
                pipe.zcount(sends, leads[cid], "+inf")
                pipe.zcount(sends, now - 86_400, "+inf")
                pipe.exists(pending)
            return list(pipe.execute())

        rows = self.cache.run(read) if ids else []
        return {
            cid: LeadFollowups(SendCounts(int(rows[3 * i]), int(rows[3 * i + 1])), bool(rows[3 * i + 2]))
            for i, cid in enumerate(ids)
        }

    def claim(self, location_id: str, claims: Iterable[tuple[str, str]]) -> dict[str, str]:
        """Claim the in-flight slot of each (contact id, job id): job id -> ok | pending | duplicate.

        Plain SET NX GET commands in pipelines (three round trips for any number of leads), because
        a cluster pipeline cannot run scripts: take the lead's pending slot, then mark the job id as
        queued, and give the slot back where the job was queued before. Each value carries this
        call's token, so a command redis-py re-sends after a read timeout finds its own value and
        answers as the first send did."""
        items = list(claims)
        if not items:
            return {}
        keys = {job_id: _keys(location_id, cid) for cid, job_id in items}
        token = uuid.uuid4().hex
        held_value = {job_id: f"{job_id} {token}" for job_id in keys}

        def run(r: Any) -> dict[str, str]:
            pipe = r.pipeline(transaction=False)
            for job_id, (_, pending, _, _) in keys.items():
                pipe.set(pending, held_value[job_id], nx=True, get=True, ex=PENDING_TTL)
            priors = pipe.execute()
            held = [job_id for job_id, prior in zip(keys, priors, strict=True) if prior in (None, held_value[job_id])]
            pipe = r.pipeline(transaction=False)
            for job_id in held:
                pipe.set(keys[job_id][2] + job_id, token, nx=True, get=True, ex=JOB_MARK_TTL)
            repeated = [
                job_id for job_id, prior in zip(held, pipe.execute(), strict=True) if prior not in (None, token)
            ]
            if repeated:
                pipe = r.pipeline(transaction=False)
                for job_id in repeated:
                    pipe.delete(keys[job_id][1])  # the slot this call just took
                pipe.execute()
            result = dict.fromkeys(keys, "pending")
            result |= dict.fromkeys(held, "ok") | dict.fromkeys(repeated, "duplicate")
            return result

        return self.cache.run(run)

    def unclaim(self, location_id: str, claims: Iterable[tuple[str, str]]) -> None:
        """Undo claims whose jobs could not be queued (just taken by `claim`), so the next run tries again."""
        items = list(claims)

        def run(r: Any) -> None:
            pipe = r.pipeline(transaction=False)
            for cid, job_id in items:
                _, pending, mark, _ = _keys(location_id, cid)
                pipe.delete(pending)
                pipe.delete(mark + job_id)
            pipe.execute()

        if items:
            self.cache.run(run)

    def release(self, location_id: str, contact_id: str, job_id: str) -> None:
        _, pending, _, _ = _keys(location_id, contact_id)
        self.cache.run(lambda r: self._release(keys=[pending], args=[job_id], client=r))

    # A job's states, each written before the act it announces.
    def job_state(self, location_id: str, contact_id: str, job_id: str) -> str | None:
        key = _jobs_key(location_id, contact_id)
        return self.cache.run(lambda r: r.hget(key, job_id))

    def reserve(
        self,
        location_id: str,
        contact_id: str,
        job_id: str,
        now: float,
        day_start: float,
        max_day: int,
        max_24h: int,
        ledger: str = SENDS,
    ) -> str:
        """Take the job's place under the caps of `ledger` (messages: SENDS; agent tasks: HANDOFFS):
        "reserved", "over_cap", or the state it had reached."""
        keys = [lead_prefix(location_id, contact_id) + ledger, _jobs_key(location_id, contact_id)]
        args = [job_id, repr(now), repr(day_start), max_day, max_24h, JOBS_TTL]
        return str(self.cache.run(lambda r: self._reserve(keys=keys, args=args, client=r)))

    def begin_send(self, location_id: str, contact_id: str, job_id: str, attempt: str) -> bool:
        """Mark the job `sending` right before the GHL request; False when another attempt has it."""
        keys, args = [_jobs_key(location_id, contact_id)], [job_id, attempt]
        return bool(self.cache.run(lambda r: self._begin_send(keys=keys, args=args, client=r)))

    def unreserve(self, location_id: str, contact_id: str, job_id: str, attempt: str, ledger: str = SENDS) -> None:
        """A send that certainly did not happen gives its place under the cap back."""
        keys = [lead_prefix(location_id, contact_id) + ledger, _jobs_key(location_id, contact_id)]
        self.cache.run(lambda r: self._unreserve(keys=keys, args=[job_id, attempt], client=r))

    # What happened.
    def log(
        self, location_id: str, contact_id: str, entry: Mapping[str, Any], stat: str, ttl: int = DEFAULT_TTL
    ) -> None:
        """End the job: its final state, an entry in the lead's history (which ends `ttl` seconds
        after, with the lead), and the outcome's count (`sent`, `failed`, `skipped:<reason>`)."""
        history = _keys(location_id, contact_id)[3]
        jobs, job_id, payload = _jobs_key(location_id, contact_id), str(entry["job_id"]), json.dumps(entry)

        def write(r: Any) -> None:
            pipe = r.pipeline(transaction=False)
            pipe.hset(jobs, job_id, str(entry["status"]))
            pipe.expire(jobs, JOBS_TTL)
            pipe.lpush(history, payload)
            pipe.ltrim(history, 0, HISTORY_LIMIT - 1)
            pipe.expire(history, ttl)
            pipe.hincrby(_stats_key(location_id), stat, 1)
            pipe.execute()

        self.cache.run(write)

    def history(self, location_id: str, contact_id: str) -> list[dict[str, Any]]:
        history = _keys(location_id, contact_id)[3]
        return [json.loads(item) for item in self.cache.run(lambda r: r.lrange(history, 0, -1))]

    def count_queued(self, location_id: str, n: int = 1) -> None:
        self.cache.run(lambda r: r.hincrby(_stats_key(location_id), "queued", n))

    def stats(self, location_id: str) -> dict[str, int]:
        raw = self.cache.run(lambda r: r.hgetall(_stats_key(location_id)))
        return {key: int(value) for key, value in raw.items()}

    def to_outbox(self, location_id: str, entry: Mapping[str, Any]) -> None:
        key, payload = outbox_key(location_id), json.dumps(entry)

        def write(r: Any) -> None:
            pipe = r.pipeline(transaction=False)
            pipe.lpush(key, payload)
            pipe.ltrim(key, 0, OUTBOX_LIMIT - 1)
            pipe.execute()

        self.cache.run(write)

    def outbox(self, location_id: str, limit: int = 100) -> list[dict[str, Any]]:
        key = outbox_key(location_id)
        return [json.loads(item) for item in self.cache.run(lambda r: r.lrange(key, 0, limit - 1))]

    # The seed's start/stop monitoring.
    def monitoring_enabled(self) -> bool:
        return self.cache.run(lambda r: r.get(MONITORING)) != "0"

    def set_monitoring(self, enabled: bool) -> None:
        self.cache.run(lambda r: r.set(MONITORING, "1" if enabled else "0"))
