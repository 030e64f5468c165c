"""Creating an agent handoff task (a `call` job) at most once, with the sending discipline of
messages (sending.py): the job's state written before each act (`reserved` with its place in the
day's one handoff, `sending:<attempt>` right before the POST), the rules (handoff.blocked) read again
right before it, and a `POST /contacts/{id}/tasks` whose outcome is unknown never repeated: GHL's
task API has no idempotency key, so such a job ends `failed` with reason `outcome_unknown`, and
its place in the day stays taken. In the lead's history, a created task is status `handed_off`.
In dry-run the task goes to the outbox.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any

from leadflow import ghl, handoff, installations
from leadflow.config import settings
from leadflow.errors import GuardrailBlocked
from leadflow.followup_store import HANDOFFS, RESERVED, SENDING, FollowupStore
from leadflow.guardrails import limits
from leadflow.jobs import Job, replay_pending
from leadflow.lead_state import LeadStore
from leadflow.observability import count, logger
from leadflow.scoring import score_lead
from leadflow.sending import OUTCOME_UNKNOWN, REPLAY_PENDING, JobTaken, Outcome, end_job, iso_utc, max_receives

HANDED_OFF = "handed_off"


def process_handoff(job: Job, attempt: int = 1, now: float | None = None) -> Outcome:
    """Create the lead's handoff task at most once, or end the job with a reason in its history.
    Raises ghl.TransientFailure, only when the task was certainly not created, for SQS to retry."""
    at = time.time() if now is None else now
    when = datetime.fromtimestamp(at, UTC)
    config = settings()
    store = LeadStore()
    fstore = FollowupStore(store.cache)
    loc, cid = job.location_id, job.lead_id
    token = uuid.uuid4().hex  # this attempt

    def finish(outcome: Outcome, stat: str) -> Outcome:
        return end_job(fstore, job, outcome, stat, at)

    def skip(reason: str) -> Outcome:
        count("Handoffs", outcome="skipped", reason=reason)
        return finish(Outcome("skipped", reason), f"skipped:{reason}")

    def resumed(state: str) -> Outcome:
        if state.startswith(SENDING):  # interrupted between `sending` and an outcome: never again
            return unknown("interrupted while creating the task")
        logger.info("handoff already ended", extra={"job_id": job.job_id, "status": state})
        return Outcome(state, "already_ended")

    def unknown(cause: str) -> Outcome:
        count("Handoffs", outcome=OUTCOME_UNKNOWN)
        logger.error("handoff outcome unknown: never created again", extra={"job_id": job.job_id, "cause": cause})
        return finish(Outcome("failed", OUTCOME_UNKNOWN), "failed")

    prior = fstore.job_state(loc, cid, job.job_id)
    if prior is not None and prior != RESERVED:
        return resumed(prior)
    if replay_pending(at, fresh=True):
        return skip(REPLAY_PENDING)
    state = store.load(loc, cid)
    reason = handoff.blocked(state)
    if reason or state is None:
        return skip(reason or "unknown_lead")
    day_start = limits(state, when, config).day_start
    reserved = fstore.reserve(loc, cid, job.job_id, at, day_start, 1, 0, ledger=HANDOFFS)
    if reserved == "over_cap":
        return skip(handoff.HANDED_OFF_TODAY)
    if reserved != RESERVED:  # a concurrent delivery of the job moved it on
        return resumed(reserved)

    score = score_lead(cid, state, when, config.sending_hours, config.default_timezone)
    task = handoff.task(state, score, when, config)

    def before_post() -> None:
        """The last moment before the act: the rules again, then the state `sending`."""
        reason = handoff.blocked(store.load(loc, cid))
        if reason:
            raise GuardrailBlocked(reason)
        if not fstore.begin_send(loc, cid, job.job_id, token):
            raise JobTaken(job.job_id)

    try:
        mode = installations.delivery_mode(loc)
        if mode == ghl.NOT_INSTALLED:
            raise ghl.NotInstalled(loc)
        if mode == "live":
            ghl.call(loc, ghl.CREATE_TASK, cid, json=task, before_post=before_post)
        else:
            before_post()
            fstore.to_outbox(loc, _outbox_entry(job, task, at))
    except JobTaken:
        logger.warning("handoff taken by another delivery", extra={"job_id": job.job_id})
        return Outcome("skipped", "in_flight")
    except GuardrailBlocked as exc:
        fstore.unreserve(loc, cid, job.job_id, token, ledger=HANDOFFS)
        return skip(exc.reason)
    except ghl.OutcomeUnknown as exc:
        return unknown(exc.reason)
    except ghl.NotInstalled:
        fstore.unreserve(loc, cid, job.job_id, token, ledger=HANDOFFS)
        return skip(ghl.NOT_INSTALLED)
    except ghl.PermanentFailure as exc:
        fstore.unreserve(loc, cid, job.job_id, token, ledger=HANDOFFS)
        count("Handoffs", outcome="failed")
        return finish(Outcome("failed", exc.reason), "failed")
    except ghl.TransientFailure as exc:
        fstore.unreserve(loc, cid, job.job_id, token, ledger=HANDOFFS)
        if attempt >= max_receives():
            count("Handoffs", outcome="failed")
            finish(Outcome("failed", exc.reason), "failed")
        raise
    count("Handoffs", outcome="created", source=job.source)
    outcome = Outcome(HANDED_OFF, None, task["title"])
    try:
        # The agent has the lead now: automated messages pause as after an agent's own message.
        until = at + config.stop_on_reply_hours * 3600
        store.record(loc, cid, fields={"max:g:paused_until": repr(until)}, now=at)
        return finish(outcome, HANDED_OFF)
    except Exception:  # created: the job's state says `sending`, so no redelivery creates it again
        logger.exception("handoff created but not recorded", extra={"job_id": job.job_id})
        return outcome


def _outbox_entry(job: Job, task: dict[str, Any], at: float) -> dict[str, Any]:
    return {
        "kind": "handoff",
        "job_id": job.job_id,
        "lead_id": job.lead_id,
        "channel": job.channel,
        "source": job.source,
        "intent_level": job.intent_level,
        "task": task,
        "at": iso_utc(at),
    }
