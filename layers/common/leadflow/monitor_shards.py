"""Fan-out of a big monitor run: its candidates in shards, on a queue the monitor itself consumes.

A scheduled run whose candidates (index entries at or above MIN_LIKELIHOOD, every location) number
more than MONITOR_SHARD_LEADS plans the run instead of doing it: locations are packed, in name
order, into shards of at most that many candidates; a location bigger than one shard is split into
rank ranges of a snapshot of its candidates, taken once per run (ZRANGESTORE). Ranges of the live
index would not do: the shards write rescored, lower values back to it as they go, which moves
leads across the ranges (some would be read twice, others never). Each shard is one message on
MONITOR_SHARD_QUEUE_URL, and each invocation of the monitor from that queue does one shard.

Once per run: the run's id is the schedule event's time. The plan is stored under it (SET NX), so a
scheduled invocation that is retried or delivered twice sends the same shards again; each shard is
claimed (SET NX with a lease of the invocation's remaining time) and then marked done, so an SQS
redelivery of a finished shard does nothing, and one that finds the shard running elsewhere goes
back to the queue for later. A shard that raised gives its claim back at once; one whose invocation
died keeps it until the lease ends, which is before SQS shows the message again (the queue's
visibility timeout is six times the function's). Doing a shard again from the start is safe: job
ids are stable per lead and slot (followup.job_id_for), and their claims (followup_store) let each
job through once.

    lf:{monitor:<run>}:plan        string  the run's shards (JSON), kept RUN_TTL
    lf:{monitor:<run>}:shard:<i>   string  "running <token>" (a lease) or "done"
    lf:{loc}:monitor:<run>         zset    the run's snapshot of a split location's candidates
    lf:{loc}:monitor:<run>:done    set     the pieces of that location done; the last one deletes both
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from leadflow.errors import InvalidInput
from leadflow.lead_state import CANDIDATE_PAGE, index_key, key_part, location_key
from leadflow.redis_client import Cache

RUN_TTL = 3600  # the shard queue's retention: no shard message outlives its plan or snapshot
LEASE_MARGIN = 5.0  # seconds a lease outlives the invocation that took it


class ShardBusy(Exception):
    """Another invocation holds the shard's lease: SQS delivers the message again later."""


class ShardsNotQueued(Exception):
    """SQS refused some of a run's shards; the scheduled invocation fails, and its retry sends the plan again."""


@dataclass(frozen=True, slots=True)
class Part:
    """One location's share of a shard: all its candidates from the live index, or (`pieces` > 1) the
    ranks [start, stop) of the run's snapshot of them, highest first (stop None: to the end)."""

    location_id: str
    start: int = 0
    stop: int | None = None
    piece: int = 0
    pieces: int = 1

    @property
    def split(self) -> bool:
        return self.pieces > 1


@dataclass(frozen=True, slots=True)
class Shard:
    run: str
    index: int
    count: int  # shards in the run
    parts: tuple[Part, ...]

    def to_json(self) -> str:
        return json.dumps({"run": self.run, "shard": self.index, "shards": self.count, "parts": _rows(self.parts)})

    @classmethod
    def from_json(cls, body: str) -> Shard:
        try:
            data = json.loads(body)
            return cls(str(data["run"]), int(data["shard"]), int(data["shards"]), _parts(data["parts"]))
        except (ValueError, TypeError, KeyError) as exc:
            raise InvalidInput(f"malformed monitor shard: {exc!r}") from None


def _rows(parts: Sequence[Part]) -> list[list[Any]]:
    """Parts as compact JSON rows: [location, start, stop, piece, pieces]."""
    return [[p.location_id, p.start, p.stop, p.piece, p.pieces] for p in parts]


def _parts(rows: Sequence[Sequence[Any]]) -> tuple[Part, ...]:
    return tuple(
        Part(str(loc), int(start), None if stop is None else int(stop), int(piece), int(pieces))
        for loc, start, stop, piece, pieces in rows
    )


def run_id(scheduled: str | None, now: datetime) -> str:
    """The run's id: the schedule event's time (`2026-11-23T14:05:00Z` -> `20261123T140500Z`), else now."""
    at = now
    if scheduled:
        try:
            at = datetime.fromisoformat(scheduled.replace("Z", "+00:00"))
        except ValueError:
            raise InvalidInput(f"schedule event time is not ISO 8601: {scheduled[:40]!r}") from None
    return at.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def plan(counts: Mapping[str, int], limit: int) -> list[tuple[Part, ...]]:
    """Shards of at most `limit` candidates: locations packed in name order; a location over the
    limit split into equal rank ranges, one shard each (its last range open-ended)."""
    shards: list[tuple[Part, ...]] = []
    current: list[Part] = []
    size = 0
    for location_id in sorted(counts):
        n = counts[location_id]
        if n > limit:
            pieces = -(-n // limit)
            step = -(-n // pieces)
            for i in range(pieces):
                stop = None if i == pieces - 1 else (i + 1) * step
                shards.append((Part(location_id, i * step, stop, i, pieces),))
            continue
        if current and size + n > limit:
            shards.append(tuple(current))
            current, size = [], 0
        current.append(Part(location_id))
        size += n
    if current:
        shards.append(tuple(current))
    return shards


def candidate_counts(cache: Cache, locations: Sequence[str], min_likelihood: float) -> dict[str, int]:
    """Each location's index entries at or above the threshold (one round trip)."""
    if not locations:
        return {}

    def read(r: Any) -> list[Any]:
        pipe = r.pipeline(transaction=False)
        for location_id in locations:
            pipe.zcount(index_key(location_id), min_likelihood, "+inf")
        return list(pipe.execute())

    return {loc: int(n) for loc, n in zip(locations, cache.run(read), strict=True)}


def _run_key(run: str, name: str) -> str:
    return f"lf:{{monitor:{key_part(run)}}}:{name}"


def snapshot_key(location_id: str, run: str) -> str:
    return location_key(location_id, f"monitor:{key_part(run)}")


# KEYS: snapshot, the live index (one slot: both carry the location's tag). ARGV: threshold, ttl.
# Made once per run: a planner retried later finds the first one, so the plan's ranges still hold.
# ZRANGESTORE copied 500,000 members in 0.79 s on the development machine (under load): within the
# client's 0.5 s timeout and one retry (which finds the copy made) up to about a million candidates
# in one location; past that the planner times out, and Lambda's retry of it finds the snapshot.
_SNAPSHOT = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('ZRANGESTORE', KEYS[1], KEYS[2], ARGV[1], '+inf', 'BYSCORE')
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]))
end
return redis.call('ZCARD', KEYS[1])
"""


def fan_out(cache: Cache, run: str, counts: Mapping[str, int], min_likelihood: float, limit: int, url: str) -> int:
    """Plan the run (or take the plan stored for it) and queue its shards. Returns how many."""
    stored = cache.run(lambda r: r.get(_run_key(run, "plan")))
    if stored is None:
        sizes = dict(counts)
        script = cache.register_script(_SNAPSHOT)
        for location_id in [loc for loc, n in counts.items() if n > limit]:
            keys = [snapshot_key(location_id, run), index_key(location_id)]
            sizes[location_id] = int(
                cache.run(lambda r, k=keys: script(keys=k, args=[min_likelihood, RUN_TTL], client=r))  # type: ignore[misc]
            )
        body = json.dumps([_rows(parts) for parts in plan(sizes, limit)])
        prior = cache.run(lambda r: r.set(_run_key(run, "plan"), body, nx=True, get=True, ex=RUN_TTL))
        stored = body if prior is None else prior  # a concurrent planner's plan, stored first, wins
    rows = json.loads(stored)
    shards = [Shard(run, i, len(rows), _parts(row)) for i, row in enumerate(rows)]
    failed = send_shards(url, shards)
    if failed:
        raise ShardsNotQueued(f"{failed} of {len(shards)} shards of run {run} not queued")
    return len(shards)


def send_shards(url: str, shards: Sequence[Shard]) -> int:
    """Queue shard messages ten to a call; returns how many SQS refused."""
    from leadflow.jobs import send_batches, sqs

    return len(send_batches(sqs(), url, shards))


# ---------------------------------------------------------------------------------------------
# The consumer's side: claiming a shard, reading a split location's range, marking it done

OK, DONE, BUSY = "ok", "done", "busy"  # a claim's outcomes; DONE is also the value of a finished shard's key
# Give a claim back only while it is still this invocation's (its lease may have ended and passed on).
_GIVE_BACK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@dataclass(frozen=True, slots=True)
class Claim:
    key: str
    value: str  # "running <token>"
    outcome: str  # OK | DONE | BUSY


def claim(cache: Cache, shard: Shard, lease_seconds: float) -> Claim:
    """Take the shard for this invocation: `ok`; `done` when it was finished before; `busy` when
    another invocation holds its lease. The value carries this call's token, so a command redis-py
    re-sends after a read timeout finds its own claim."""
    key = _run_key(shard.run, f"shard:{shard.index}")
    value = f"running {uuid.uuid4().hex}"
    lease_ms = max(1, int(lease_seconds * 1000))
    prior = cache.run(lambda r: r.set(key, value, nx=True, get=True, px=lease_ms))
    if prior is None or prior == value:
        return Claim(key, value, OK)
    return Claim(key, value, DONE if prior == DONE else BUSY)


def finish(cache: Cache, taken: Claim) -> None:
    cache.run(lambda r: r.set(taken.key, DONE, ex=RUN_TTL))


def give_back(cache: Cache, taken: Claim) -> None:
    """After a failure: the shard may be done again at once (its SQS retry)."""
    script = cache.register_script(_GIVE_BACK)
    cache.run(lambda r: script(keys=[taken.key], args=[taken.value], client=r))


def snapshot_pages(cache: Cache, part: Part, run: str) -> Iterator[list[tuple[str, float]]]:
    """Pages of (contact id, indexed likelihood) of a split part's ranks, highest first. Nothing when
    the snapshot has gone (RUN_TTL passed): later runs have covered those leads."""
    key = snapshot_key(part.location_id, run)
    if not cache.run(lambda r: r.exists(key)):
        from leadflow.observability import logger

        logger.warning("monitor snapshot gone: part skipped", extra={"run": run, "location_id": part.location_id})
        return
    offset = part.start
    while part.stop is None or offset < part.stop:
        last = offset + CANDIDATE_PAGE - 1 if part.stop is None else min(offset + CANDIDATE_PAGE, part.stop) - 1
        page: list[tuple[str, float]] = cache.run(
            lambda r, a=offset, b=last: r.zrange(key, a, b, desc=True, withscores=True)  # type: ignore[misc]
        )
        if not page:
            return
        yield [(str(cid), float(score)) for cid, score in page]
        if len(page) < last - offset + 1:
            return
        offset = last + 1


def piece_done(cache: Cache, part: Part, run: str) -> None:
    """Record a split part as done; the location's last piece deletes the snapshot."""
    key = snapshot_key(part.location_id, run)
    done = key + ":done"

    def mark(r: Any) -> int:
        pipe = r.pipeline(transaction=False)
        pipe.sadd(done, part.piece)
        pipe.expire(done, RUN_TTL)
        pipe.scard(done)
        return int(pipe.execute()[-1])

    if cache.run(mark) >= part.pieces:
        cache.run(lambda r: r.delete(key, done))
