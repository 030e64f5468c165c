"""Sending a follow-up job: the authoritative guardrail check at the moment of sending, the atomic
reservation under the cap, composing, delivery (GHL, or the outbox in dry-run), and the record of
every outcome in the lead's history. Also the on-demand request and the stats.
"""

from __future__ import annotations

import functools
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from leadflow import ghl, guardrails, installations, own_messages
from leadflow.compose import CLAUDE_ATTEMPTS, CLAUDE_TIMEOUT, compose
from leadflow.config import settings
from leadflow.errors import GuardrailBlocked, InvalidInput, LeadNotFound, StoreUnavailable
from leadflow.followup import choose_channel
from leadflow.followup_store import RESERVED, SENDING, FollowupStore
from leadflow.jobs import Job, followup_queue_url, replay_pending, send_jobs, sqs
from leadflow.lead import LeadState
from leadflow.lead_state import LeadStore
from leadflow.observability import count, logger
from leadflow.scoring import score_lead

# The template's default redrive count, used when the queue's own RedrivePolicy cannot be read: a job
# failing this often goes to the DLQ, and is recorded as failed on its last attempt.
MAX_RECEIVES = 5
OUTCOME_UNKNOWN = "outcome_unknown"
NOT_INSTALLED = ghl.NOT_INSTALLED
REPLAY_PENDING = "replay_pending"  # spilled events (perhaps a STOP) not yet recorded
# The longest one job can take: Claude (every attempt), every wait of the send (ghl.MAX_WAIT), and
# each GHL attempt's connect, write and read timeouts. The send function starts no job with less
# time left, so that no GHL request is cut off by the function's timeout (its outcome unknown).
LONGEST_JOB_SECONDS = (
    CLAUDE_ATTEMPTS * CLAUDE_TIMEOUT
    + ghl.MAX_WAIT
    + ghl.MAX_ATTEMPTS * sum(t or 0.0 for t in (ghl.TIMEOUT.connect, ghl.TIMEOUT.write, ghl.TIMEOUT.read))
)
NO_COUNTS = guardrails.SendCounts(0, 0)


@dataclass(frozen=True, slots=True)
class Outcome:
    status: str  # sent | skipped | failed
    reason: str | None = None
    body: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status, "reason": self.reason}


def iso_utc(at: float) -> str:
    """Epoch seconds as ISO 8601 UTC with a Z: how history and outbox entries give times."""
    return datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z")


def process_job(job: Job, attempt: int = 1, now: float | None = None) -> Outcome:
    """Send one job at most once, or end it with a reason; every end is in the lead's history.

    The job's state is written before each act (reserved, then sending right before the request),
    and the rules are read again right before it. Raises ghl.TransientFailure, only when the
    message was certainly not sent, for SQS to retry.
    """
    if job.channel == "call":  # a call is the agent's: a handoff task, never an automated message
        from leadflow.handoff_send import process_handoff

        return process_handoff(job, attempt, now)
    at = time.time() if now is None else now
    when = datetime.fromtimestamp(at, UTC)
    config = settings()
    store = LeadStore()
    fstore = FollowupStore(store.cache)
    loc, cid = job.location_id, job.lead_id
    token = uuid.uuid4().hex  # this attempt, so a retried Redis call is recognised as its own

    def finish(outcome: Outcome, stat: str) -> Outcome:
        return end_job(fstore, job, outcome, stat, at)

    def unknown(cause: str) -> Outcome:
        count("MessagesOutcomeUnknown", channel=job.channel)
        logger.error("job outcome unknown: never sent again", extra={"job_id": job.job_id, "cause": cause})
        return finish(Outcome("failed", OUTCOME_UNKNOWN), "failed")

    prior = fstore.job_state(loc, cid, job.job_id)
    if prior is not None and prior != RESERVED:
        return _resumed(job, prior, unknown)
    if replay_pending(at, fresh=True):
        count("MessagesSkipped", reason=REPLAY_PENDING)
        return finish(Outcome("skipped", REPLAY_PENDING), f"skipped:{REPLAY_PENDING}")
    mode = installations.delivery_mode(loc)
    if mode == NOT_INSTALLED:
        count("MessagesSkipped", reason=NOT_INSTALLED)
        return finish(Outcome("skipped", NOT_INSTALLED), f"skipped:{NOT_INSTALLED}")
    state = store.load(loc, cid)
    if state is None:
        return finish(Outcome("skipped", "unknown_lead"), "skipped:unknown_lead")
    limit = guardrails.limits(state, when, config)
    counts = fstore.followups(loc, {cid: limit.day_start}, at)[cid].counts
    reason = guardrails.blocked(state, job.channel, when, counts, limit)
    if reason is None and not state.profile.can_reach(job.channel):
        reason = "unreachable"
    if reason is None:
        reserved = fstore.reserve(loc, cid, job.job_id, at, limit.day_start, limit.max_per_day, limit.max_per_24h)
        if reserved == "over_cap":
            reason = guardrails.DAILY_CAP
        elif reserved != RESERVED:  # a concurrent delivery of the job moved it on
            return _resumed(job, reserved, unknown)
    if reason:
        count("MessagesSkipped", reason=reason)
        return finish(Outcome("skipped", reason), f"skipped:{reason}")

    message = compose(job.channel, job.top_signals, job.intent_level, state.profile.first_name, job.message)

    def before_post() -> None:
        """The last moment before the act: the rules again (a STOP may have come in while the message
        was written or the rate limit waited), then the state `sending`."""
        moment = datetime.fromtimestamp(time.time(), UTC) if now is None else when
        reason = recheck(store.load(loc, cid), job.channel, moment)
        if reason:
            raise GuardrailBlocked(reason)
        if not fstore.begin_send(loc, cid, job.job_id, token):
            raise JobTaken(job.job_id)

    sent_ids: tuple[str, ...] = ()
    try:
        if mode == "live":
            sent_ids = ghl.send_message(loc, cid, job.channel, message.body, message.subject, before_post=before_post)
        else:
            before_post()
            fstore.to_outbox(loc, _outbox_entry(job, message.body, message.subject, message.source, at))
    except JobTaken:
        logger.warning("job taken by another delivery", extra={"job_id": job.job_id})
        return Outcome("skipped", "in_flight")
    except GuardrailBlocked as exc:
        fstore.unreserve(loc, cid, job.job_id, token)
        count("MessagesSkipped", reason=exc.reason)
        return finish(Outcome("skipped", exc.reason), f"skipped:{exc.reason}")
    except ghl.OutcomeUnknown as exc:
        return unknown(exc.reason)
    except ghl.NotInstalled:  # uninstalled, or its refresh refused, since the check above
        fstore.unreserve(loc, cid, job.job_id, token)
        count("MessagesSkipped", reason=NOT_INSTALLED)
        return finish(Outcome("skipped", NOT_INSTALLED), f"skipped:{NOT_INSTALLED}")
    except ghl.PermanentFailure as exc:
        fstore.unreserve(loc, cid, job.job_id, token)
        count("MessagesFailed", channel=job.channel)
        return finish(Outcome("failed", exc.reason), "failed")
    except ghl.DailyQuotaSpent:  # nothing more goes to GHL for the location today: no retry
        fstore.unreserve(loc, cid, job.job_id, token)
        count("MessagesSkipped", reason=ghl.RATE_LIMITED)
        return finish(Outcome("skipped", ghl.RATE_LIMITED), f"skipped:{ghl.RATE_LIMITED}")
    except ghl.TransientFailure as exc:
        fstore.unreserve(loc, cid, job.job_id, token)
        if attempt >= max_receives():
            count("MessagesFailed", channel=job.channel)
            finish(Outcome("failed", exc.reason), "failed")
        raise
    # Known as leadflow's own, its OutboundMessage webhook is no agent taking over. Never raises.
    own_messages.remember(store.cache, loc, cid, sent_ids, at)
    count("MessagesSent", channel=job.channel)
    if job.triggered_at:
        count("SpeedToLeadSeconds", max(0.0, at - job.triggered_at), unit=MetricUnit.Seconds, source=job.source)
    outcome = Outcome("sent", None, message.body)
    try:
        return finish(outcome, "sent")
    except Exception:  # sent: the job's state says `sending`, so no redelivery can send it again
        logger.exception("message sent but not recorded", extra={"job_id": job.job_id})
        return outcome


def end_job(fstore: FollowupStore, job: Job, outcome: Outcome, stat: str, at: float) -> Outcome:
    """A job's end, written once: its final state and history entry (ending with the lead), the
    outcome's count, and its lead's in-flight slot freed."""
    entry = {"job_id": job.job_id, "channel": job.channel, "status": outcome.status, "at": iso_utc(at)}
    entry |= {"reason": outcome.reason} if outcome.reason else {}
    entry |= {"body": outcome.body} if outcome.body else {}
    fstore.log(job.location_id, job.lead_id, entry, stat, ttl=settings().lead_ttl_days * 86_400)
    fstore.release(job.location_id, job.lead_id, job.job_id)
    logger.info("job ended", extra={"job_id": job.job_id, "status": outcome.status, "reason": outcome.reason})
    return outcome


class JobTaken(Exception):
    """Another delivery of the same job holds it (SQS delivers at least once)."""


def recheck(state: LeadState | None, channel: str, now: datetime) -> str | None:
    """The rules right before the act, the cap aside (the job holds its place under it)."""
    if state is None:
        return "unknown_lead"
    config = settings()
    reason = guardrails.blocked(state, channel, now, NO_COUNTS, guardrails.limits(state, now, config))
    return reason or (None if state.profile.can_reach(channel) else "unreachable")


def _resumed(job: Job, state: str, unknown: Callable[[str], Outcome]) -> Outcome:
    """A job delivered again: ended before (nothing more to do), or interrupted while sending."""
    if state.startswith(SENDING):
        return unknown("interrupted while sending")
    logger.info("job already ended", extra={"job_id": job.job_id, "status": state})
    return Outcome(state, "already_ended")


def _outbox_entry(job: Job, body: str, subject: str | None, composer: str, at: float) -> dict[str, Any]:
    entry = {"job_id": job.job_id, "lead_id": job.lead_id, "channel": job.channel, "subject": subject, "body": body}
    entry |= {"source": job.source, "composer": composer, "intent_level": job.intent_level, "at": iso_utc(at)}
    return {k: v for k, v in entry.items() if v is not None}


def request_send(
    location_id: str, lead_id: str, channel: str | None, message: str | None, now: float | None = None
) -> Job:
    """On demand: the same guardrails as any follow-up, checked now (and again when sending)."""
    at = time.time() if now is None else now
    when = datetime.fromtimestamp(at, UTC)
    config = settings()
    store = LeadStore()
    fstore = FollowupStore(store.cache)
    state = store.load(location_id, lead_id)
    if state is None:
        raise LeadNotFound(lead_id)
    if installations.delivery_mode(location_id) == NOT_INSTALLED:
        raise GuardrailBlocked(NOT_INSTALLED)
    score = score_lead(lead_id, state, when, config.sending_hours, config.default_timezone)
    chosen = channel or choose_channel(state, score, calls=False) or "sms"
    limit = guardrails.limits(state, when, config)
    counts = fstore.followups(location_id, {lead_id: limit.day_start}, at)[lead_id].counts
    reason = guardrails.blocked(state, chosen, when, counts, limit)
    if reason is None and config.send_mode == "live" and ghl.daily_quota_spent(location_id):
        reason = ghl.RATE_LIMITED  # the last reason in the contract's order
    if reason:
        raise GuardrailBlocked(reason)
    if not state.profile.can_reach(chosen):
        raise InvalidInput(f"channel: the lead has no {'email address' if chosen == 'email' else 'phone number'}")
    job = Job.for_score(f"od-{uuid.uuid4()}", location_id, score, chosen, "on_demand", message=message)
    if send_jobs([job]):
        raise StoreUnavailable("the follow-up queue is unavailable")
    fstore.count_queued(location_id)
    count("JobsQueued", source="on_demand", channel=chosen)
    return job


@functools.cache
def _redrive(queue_url: str) -> tuple[str | None, int]:
    """The follow-up queue's dead-letter queue URL and redrive count, from its RedrivePolicy."""
    import json

    attributes = sqs().get_queue_attributes(QueueUrl=queue_url, AttributeNames=["RedrivePolicy"])["Attributes"]
    policy = attributes.get("RedrivePolicy")
    if not policy:
        return None, MAX_RECEIVES
    redrive = json.loads(policy)
    name = redrive["deadLetterTargetArn"].rsplit(":", 1)[-1]
    return str(sqs().get_queue_url(QueueName=name)["QueueUrl"]), int(redrive.get("maxReceiveCount", MAX_RECEIVES))


def max_receives() -> int:
    try:
        return _redrive(followup_queue_url())[1]
    except Exception:  # the template's default stands in
        return MAX_RECEIVES


def dlq_depth() -> int | None:
    try:
        url = _redrive(followup_queue_url())[0]
        if url is None:
            return None
        attributes = sqs().get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
        return int(attributes["Attributes"]["ApproximateNumberOfMessages"])
    except Exception:  # stats stay useful without SQS
        logger.warning("DLQ depth unavailable")
        return None


def stats(location_id: str) -> dict[str, Any]:
    """The seed's get_task_stats(), for one location."""
    fstore = FollowupStore()
    raw = fstore.stats(location_id)
    skipped = {key.split(":", 1)[1]: n for key, n in raw.items() if key.startswith("skipped:")}
    queued, sent, failed = raw.get("queued", 0), raw.get("sent", 0), raw.get("failed", 0)
    handed_off = raw.get("handed_off", 0)
    ended = sent + handed_off + failed + sum(skipped.values())
    return {
        "total_tasks": queued,
        "pending": max(0, queued - ended),
        "sent": sent,
        "handed_off": handed_off,  # agent tasks created (call jobs)
        "skipped": skipped,  # a count per reason
        "skipped_total": sum(skipped.values()),
        "failed": failed,
        "dlq_depth": dlq_depth(),
        "is_running": fstore.monitoring_enabled(),
        "send_mode": settings().send_mode,
        "location_id": location_id,
    }
