"""Write-back: leadflow's view of a lead on its GHL contact, so agents see it inside GHL and GHL
workflows can act on it.

What: the custom fields `leadflow_score` (0-100, one decimal), `leadflow_intent` and `leadflow_why`
(the top signals, "pricing tool x3, agent inquiry x1") by `PUT /contacts/{id}` with
`customFields: [{"id", "field_value"}]`, and the tag `leadflow:<intent>`: the other `leadflow:*` tags
removed with `DELETE /contacts/{id}/tags`, then the new one added with `POST /contacts/{id}/tags`
(the contact's own tags are never touched; a PUT of `tags` would replace them all). The fields are
found (`GET /locations/{id}/customFields`) or created (`POST`) once per location, their ids cached.

When: the intent level changed, or the likelihood moved `SCORE_BAND` points or more, since the last
write-back (a lead never written counts as cold at 0: a contact without leadflow fields looks so).

How: the webhook (after recording an event) and the monitor (after rescoring) call `maybe_queue`,
which queues a sync job `{"kind": "sync", "lead_id", "location_id", "job_id"}` on the follow-up queue
at once, at most once per lead per `WINDOW_SECONDS` (a marker, SET NX EX). The send function reads
the lead when the job runs (`process_sync`), so it writes the state of that moment, only when it
still differs from the last write-back, and records what it wrote. A lead that is due again while
its window is held (the later events of a burst) waits in a set that the monitor's next run
drains (`monitor_pass`): a burst makes one write-back at once and, if it moved the lead further,
one more at the first monitor run after its minute. (Rather than one job delayed to the end of the
minute: agents see the first change at once, and no message waits out a minute on the queue.)
Every call of a write-back is idempotent (a field set again, a tag removed or added again), so a
failure is simply retried by SQS, whatever its outcome.

lf:{loc:cid}:synced       hash   score, intent, at: the last write-back
lf:{loc:cid}:sync-queued  string a sync job was queued for the lead (the coalescing window)
lf:{loc}:sync-waiting     zset   contact id -> when its write-back found its window held
lf:{loc}:ghl-fields       hash   custom field name -> its GHL id
lf:{loc}:ghl-fields-lock  string held while one job finds or creates the fields
"""

from __future__ import annotations

import functools
import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from leadflow import ghl, installations
from leadflow.config import settings
from leadflow.errors import InvalidInput
from leadflow.jobs import followup_queue_url, send_batches
from leadflow.lead_state import LeadStore, Recorded, lead_prefix, location_key, waiting_key, window_key
from leadflow.observability import count, logger
from leadflow.redis_client import Cache, cache
from leadflow.scoring import PredictiveSellScore, intent_level, likelihood, score_lead

FIELDS = {"leadflow_score": "NUMERICAL", "leadflow_intent": "TEXT", "leadflow_why": "TEXT"}
LEVELS = ("cold", "warm", "hot", "urgent")
TAG_PREFIX = "leadflow:"
SCORE_BAND = 10.0
WINDOW_SECONDS = 60  # one write-back per lead per window
MONITOR_BUDGET = 200  # sync jobs one monitor run queues per location: GHL's rate limit is shared with messages
WAITING_TTL = 86_400  # the waiting set outlives a monitor that is switched off for a while
WAITING_PAGE = 1000
FIELDS_TTL = 7 * 86_400  # a field deleted in GHL is found missing (and created again) within a week
WEBHOOK_BUDGET = 4.0  # seconds of the webhook's 10 s after which it queues no write-back
LOCK_SECONDS = 30
LOCK_WAIT = 5.0  # seconds a job waits for another one creating the location's fields
WHY_SIGNALS = 3
LABELS = {
    "pricing_tool_usage": "pricing tool",
    "agent_inquiry": "agent inquiry",
    "neighborhood_research": "neighborhood research",
    "market_report_engagement": "market report",
    "property_search": "property search",
    "listing_view": "listing view",
    "email_open": "email open",
    "website_visit": "website visit",
    "sms_response": "sms reply",
    "virtual_tour_view": "virtual tour",
}


@dataclass(frozen=True, slots=True)
class SyncJob:
    job_id: str
    lead_id: str
    location_id: str

    def to_json(self) -> str:
        return json.dumps(
            {"kind": "sync", "lead_id": self.lead_id, "location_id": self.location_id, "job_id": self.job_id}
        )

    @classmethod
    def parse(cls, body: str) -> SyncJob | None:
        """The sync job in a follow-up queue message, or None for a message job (no `kind`, or "message")."""
        try:
            data = json.loads(body)
        except ValueError:
            return None
        if not isinstance(data, dict) or data.get("kind") != "sync":
            return None
        ids = [data.get(name) for name in ("job_id", "lead_id", "location_id")]
        if not all(isinstance(value, str) and value for value in ids):
            raise InvalidInput("malformed sync job: job_id, lead_id and location_id are required")
        return cls(*map(str, ids))


@dataclass(frozen=True, slots=True)
class Written:
    score: float
    intent: str


NEVER_WRITTEN = Written(0.0, "cold")


def due(last: Written | None, score: float) -> bool:
    """Whether GHL should be told: the intent changed, or the likelihood moved SCORE_BAND points or more."""
    last = last or NEVER_WRITTEN
    return intent_level(score) != last.intent or abs(score - last.score) >= SCORE_BAND


def why(score: PredictiveSellScore) -> str:
    """The top signals, as agents read them: "pricing tool x3, agent inquiry x1"."""
    top = score.key_signals[:WHY_SIGNALS]
    return ", ".join(f"{LABELS.get(k.type, k.type.replace('_', ' '))} x{k.frequency}" for k in top)


def _synced_key(location_id: str, contact_id: str) -> str:
    return lead_prefix(location_id, contact_id) + ":synced"


def _written(store: Cache, location_id: str, contact_ids: list[str]) -> dict[str, Written]:
    """The last write-back of each lead (one round trip)."""

    def read(r: Any) -> list[Any]:
        pipe = r.pipeline(transaction=False)
        for cid in contact_ids:
            pipe.hmget(_synced_key(location_id, cid), "score", "intent")
        return list(pipe.execute())

    rows = store.run(read) if contact_ids else []
    return {
        cid: Written(float(score), intent)
        for cid, (score, intent) in zip(contact_ids, rows, strict=True)
        if score is not None and intent
    }


# ---------------------------------------------------------------------------------------------
# Queueing: the webhook and the monitor


def maybe_queue(location_id: str, leads: Mapping[str, Recorded], request_at: float) -> int:
    """After events: queue the leads' write-backs when due (see `maybe_queue_many`), each lead as the
    record script left it (its likelihood, its last write-back). A lead whose window is held and
    that waits for the monitor already is left to it: its state is written, the monitor rescores it
    (the later events of a burst cost no round trip). Not when the webhook request that began at
    `request_at` (epoch) has spent WEBHOOK_BUDGET already (SQS or Redis slow: the webhook must answer
    in time; a later event or the monitor queues it)."""
    leads = {cid: lead for cid, lead in leads.items() if not lead.waiting}
    if not leads:
        return 0
    if time.time() - request_at > WEBHOOK_BUDGET:
        logger.warning("write-back not queued: the webhook is short of time", extra={"location_id": location_id})
        return 0
    scores = {cid: lead.likelihood for cid, lead in leads.items()}
    written = {cid: lead.synced and Written(*lead.synced) for cid, lead in leads.items()}
    return maybe_queue_many(location_id, scores, written=written)


def maybe_queue_many(
    location_id: str,
    scores: Mapping[str, float],
    limit: int | None = None,
    waited: frozenset[str] = frozenset(),
    written: Mapping[str, Written | None] | None = None,
) -> int:
    """Queue a write-back for each lead (contact id -> likelihood now) whose score differs enough from
    its last write-back, at most `limit`, highest first. A lead whose window is held, or whose job
    SQS refused, waits for the monitor's next run; so does one past the limit that had `waited`
    (the monitor rescores its own candidates every run anyway). Returns how many were queued. Never
    raises: a write-back is never worth an event or a monitor run. `written`: the leads' last
    write-backs when the caller has read them already (else one round trip reads them)."""
    try:
        return _queue(location_id, scores, limit, waited, written)
    except Exception as exc:
        logger.warning("write-back not queued", extra={"location_id": location_id, "error": type(exc).__name__})
        return 0


def monitor_pass(
    location_id: str, fresh: Mapping[str, float], now: float, budget: int = MONITOR_BUDGET, drain: bool = True
) -> int:
    """The monitor's share, after rescoring `fresh` (contact id -> likelihood now): their write-backs
    when due, and those of the leads that waited (see the module's docstring). Never raises. A run
    fanned out over several shards of one location gives each a part of the `budget`, and drains
    the waiting set in one of them (`drain`)."""
    waiting: dict[str, float] = {}
    if drain:
        try:
            waiting = _drain_waiting(location_id, now)
        except Exception as exc:
            extra = {"location_id": location_id, "error": type(exc).__name__}
            logger.warning("waiting write-backs not read", extra=extra)
    return maybe_queue_many(location_id, waiting | dict(fresh), budget, frozenset(waiting))


def _queue(
    location_id: str,
    scores: Mapping[str, float],
    limit: int | None,
    waited: frozenset[str],
    written: Mapping[str, Written | None] | None,
) -> int:
    store = cache()
    ids = list(scores)
    last = _written(store, location_id, ids) if written is None else written
    changed = sorted((cid for cid in ids if due(last.get(cid), scores[cid])), key=lambda cid: -scores[cid])
    first, later = (changed[:limit], changed[limit:]) if limit is not None else (changed, [])
    taken = _take_windows(store, location_id, first)
    jobs = [SyncJob(f"sync-{uuid.uuid4().hex}", cid, location_id) for cid in taken]
    failed = _send(jobs) if jobs else []
    if failed:
        store.run(lambda r: r.delete(*(window_key(location_id, job.lead_id) for job in failed)))
    _wait(store, location_id, [*(cid for cid in later if cid in waited), *(job.lead_id for job in failed)])
    if len(jobs) > len(failed):
        count("WriteBacks", len(jobs) - len(failed), outcome="queued")
    return len(jobs) - len(failed)


def _wait(store: Cache, location_id: str, contact_ids: list[str]) -> None:
    if not contact_ids:
        return
    key, at = waiting_key(location_id), time.time()

    def write(r: Any) -> None:
        pipe = r.pipeline(transaction=False)
        pipe.zadd(key, dict.fromkeys(contact_ids, at))
        pipe.expire(key, WAITING_TTL)
        pipe.execute()

    store.run(write)


def _drain_waiting(location_id: str, now: float) -> dict[str, float]:
    """The waiting leads (taken off the set) and their likelihood now; erased leads are dropped. A
    lead still held when queued again goes back to the set."""
    store = cache()
    key = waiting_key(location_id)
    ids = [str(cid) for cid in store.run(lambda r: r.zrange(key, 0, WAITING_PAGE - 1))]
    if not ids:
        return {}
    store.run(lambda r: r.zrem(key, *ids))
    states = LeadStore(store).load_many(location_id, ids)
    return {cid: likelihood(state, now) for cid, state in states.items()}


def _take_windows(store: Cache, location_id: str, contact_ids: list[str]) -> list[str]:
    """The leads whose coalescing window this call opened. SET NX GET with this call's token: a
    command redis-py sends again after a read timeout finds its own value and counts as taken.

    Every lead also goes to the waiting set in the same round trip: one whose window was held must
    wait for the monitor's next run, and the monitor finds the write-back of one whose window this
    call opened done by then (no longer due) and lets it go."""
    if not contact_ids:
        return []
    token, key = uuid.uuid4().hex, waiting_key(location_id)

    def run(r: Any) -> list[Any]:
        pipe = r.pipeline(transaction=False)
        for cid in contact_ids:
            pipe.set(window_key(location_id, cid), token, nx=True, get=True, ex=WINDOW_SECONDS)
        pipe.zadd(key, dict.fromkeys(contact_ids, time.time()))
        pipe.expire(key, WAITING_TTL)
        return list(pipe.execute())[: len(contact_ids)]

    priors = store.run(run)
    return [cid for cid, prior in zip(contact_ids, priors, strict=True) if prior in (None, token)]


@functools.cache
def _sqs() -> Any:
    """SQS for sync jobs: one attempt, 0.5 s to connect, 1 s to answer: a write-back adds at most
    1.5 s to a webhook (begun within WEBHOOK_BUDGET), and one that failed waits for the monitor."""
    import boto3
    from botocore.config import Config

    config = Config(connect_timeout=0.5, read_timeout=1, retries={"max_attempts": 1, "mode": "standard"})
    return boto3.client("sqs", config=config)


def _send(jobs: list[SyncJob]) -> list[SyncJob]:
    """Queue sync jobs, ten per SendMessageBatch; returns those that failed."""
    return send_batches(_sqs(), followup_queue_url(), jobs)


# ---------------------------------------------------------------------------------------------
# Writing: the send function


def process_sync(job: SyncJob, attempt: int = 1, now: float | None = None) -> dict[str, Any]:
    """Write the lead's state as it is now to its GHL contact (or the outbox in dry-run), when it
    differs enough from the last write-back. Raises ghl.TransientFailure or ghl.OutcomeUnknown for
    SQS to retry (every call is idempotent), except on the last attempt."""
    at = time.time() if now is None else now
    config = settings()
    store = LeadStore()
    loc, cid = job.location_id, job.lead_id
    state = store.load(loc, cid)
    if state is None:  # erased (ContactDelete) or expired since
        return {"status": "skipped", "reason": "unknown_lead"}
    when = datetime.fromtimestamp(at, UTC)
    score = score_lead(cid, state, when, config.sending_hours, config.default_timezone)
    last = _written(store.cache, loc, [cid]).get(cid)
    if not due(last, score.likelihood_score):
        count("WriteBacks", outcome="unchanged")
        return {"status": "unchanged"}
    intent = score.intent_level
    values: dict[str, Any] = {
        "leadflow_score": score.likelihood_score,
        "leadflow_intent": intent,
        "leadflow_why": why(score),
    }
    swap = last is None or last.intent != intent
    remove = [TAG_PREFIX + level for level in LEVELS if level != intent] if swap else []
    add = [TAG_PREFIX + intent] if swap else []
    mode = installations.delivery_mode(loc)
    if mode == ghl.NOT_INSTALLED:
        count("WriteBacks", outcome="not_installed")
        return {"status": "skipped", "reason": ghl.NOT_INSTALLED}
    try:
        if mode == "live":
            _write(loc, cid, values, remove, add, store.cache)
        else:
            entry = {"kind": "sync", "job_id": job.job_id, "lead_id": cid, "custom_fields": values}
            entry |= {"tags": {"remove": remove, "add": add}, "at": when.isoformat().replace("+00:00", "Z")}
            from leadflow.followup_store import FollowupStore

            FollowupStore(store.cache).to_outbox(loc, entry)
    except ghl.PermanentFailure as exc:
        count("WriteBacks", outcome="failed")
        logger.error("write-back refused by GHL", extra={"job_id": job.job_id, "reason": exc.reason})
        return {"status": "failed", "reason": exc.reason}
    except ghl.GhlError as exc:  # transient or unknown: safe to repeat
        from leadflow.sending import max_receives

        if attempt >= max_receives():
            count("WriteBacks", outcome="failed")
            logger.error("write-back given up", extra={"job_id": job.job_id, "reason": exc.reason})
            return {"status": "failed", "reason": exc.reason}
        raise
    _remember(store.cache, loc, cid, Written(score.likelihood_score, intent), at, config.lead_ttl_days * 86_400)
    count("WriteBacks", outcome="written")
    return {"status": "written", "intent_level": intent, "likelihood_score": score.likelihood_score}


def _write(
    location_id: str, contact_id: str, values: Mapping[str, Any], remove: list[str], add: list[str], store: Cache
) -> None:
    """The GHL calls, in order: the fields, then the tag swap (remove, then add)."""
    ids = field_ids(location_id, store)
    fields = [{"id": ids[name], "field_value": value} for name, value in values.items()]
    ghl.call(location_id, ghl.UPDATE_CONTACT, contact_id, json={"customFields": fields})
    if remove:
        ghl.call(location_id, ghl.REMOVE_TAGS, contact_id, json={"tags": remove})
    if add:
        ghl.call(location_id, ghl.ADD_TAGS, contact_id, json={"tags": add})


def _remember(store: Cache, location_id: str, contact_id: str, written: Written, at: float, ttl: int) -> None:
    key = _synced_key(location_id, contact_id)

    def write(r: Any) -> None:
        pipe = r.pipeline(transaction=False)
        pipe.hset(key, mapping={"score": repr(written.score), "intent": written.intent, "at": repr(at)})
        pipe.expire(key, ttl)
        pipe.execute()

    store.run(write)


# ---------------------------------------------------------------------------------------------
# The location's custom fields


def field_ids(location_id: str, store: Cache) -> dict[str, str]:
    """The GHL ids of leadflow's custom fields in the location: cached, else found, else created. One
    job at a time finds or creates them (a lock), so concurrent jobs never create a field twice; a
    creation whose outcome is unknown is found by the next attempt's GET."""
    key = location_key(location_id, "ghl-fields")
    ids = _complete(store.run(lambda r: r.hgetall(key)))
    if ids:
        return ids
    lock, token = location_key(location_id, "ghl-fields-lock"), uuid.uuid4().hex
    deadline = time.monotonic() + LOCK_WAIT
    while store.run(lambda r: r.set(lock, token, nx=True, get=True, ex=LOCK_SECONDS)) not in (None, token):
        time.sleep(0.2)  # another job is finding or creating them
        ids = _complete(store.run(lambda r: r.hgetall(key)))
        if ids:
            return ids
        if time.monotonic() > deadline:
            raise ghl.TransientFailure("custom fields being created")
    try:
        found = _find_fields(location_id)
        for name, data_type in FIELDS.items():
            if name not in found:
                found[name] = _create_field(location_id, name, data_type)
        mapping = {name: found[name] for name in FIELDS}

        def cache_ids(r: Any) -> None:
            pipe = r.pipeline(transaction=False)
            pipe.hset(key, mapping=mapping)
            pipe.expire(key, FIELDS_TTL)
            pipe.execute()

        store.run(cache_ids)
        return mapping
    finally:
        store.run(lambda r: r.delete(lock) if r.get(lock) == token else 0)


def _complete(ids: Mapping[str, str]) -> dict[str, str] | None:
    return dict(ids) if all(ids.get(name) for name in FIELDS) else None


def _find_fields(location_id: str) -> dict[str, str]:
    """leadflow's fields among the location's contact fields, by name or by key (`contact.<name>`)."""
    reply = ghl.call(location_id, ghl.LIST_CUSTOM_FIELDS, location_id, params={"model": "contact"})
    found: dict[str, str] = {}
    fields = reply.get("customFields")
    for field in fields if isinstance(fields, list) else []:
        if not isinstance(field, dict) or not field.get("id"):
            continue
        names = {str(field.get("name") or ""), str(field.get("fieldKey") or "").removeprefix("contact.")}
        for name in names & set(FIELDS):
            found.setdefault(name, str(field["id"]))
    return found


def _create_field(location_id: str, name: str, data_type: str) -> str:
    body = {"name": name, "dataType": data_type, "model": "contact", "placeholder": name}
    reply = ghl.call(location_id, ghl.CREATE_CUSTOM_FIELD, location_id, json=body)
    field = reply.get("customField")
    field_id = field.get("id") if isinstance(field, dict) else None
    if not field_id:
        raise ghl.PermanentFailure(f"GHL created the custom field {name} without an id")
    logger.info("custom field created", extra={"location_id": location_id, "field": name})
    return str(field_id)
