"""Deciding follow-ups: which leads get a job now, on which channel, and queuing them.

Two ways in: the monitor's scheduled scan of every location's high-intent leads, and the webhook's
fast path for a lead an event has just made urgent. Both apply the same guardrails (guardrails.py)
and the same one-job-in-flight claim; the send function checks everything again before sending.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from leadflow import guardrails, handoff, monitor_shards, writeback
from leadflow.config import Settings, settings
from leadflow.followup_store import FollowupStore, LeadFollowups
from leadflow.jobs import Job, replay_pending, send_jobs
from leadflow.lead import LeadState
from leadflow.lead_state import LeadStore
from leadflow.observability import count, logger
from leadflow.scoring import PredictiveSellScore, intent_level, likelihood, score_lead
from leadflow.signals import Signal

URGENT_BLOCK_HOURS = 4  # an urgent lead may get one monitor job per 4-hour block (the cap still holds)


def choose_channel(state: LeadState, score: PredictiveSellScore, *, calls: bool = True) -> str | None:
    """The recommended channel when the lead can be reached on it, else the other one. A recommended
    call stays a call, a handoff to the agent (never an automated text); `calls=False` asks for a
    message channel (a person asked leadflow to send one)."""
    if calls and score.recommended_channel == handoff.CHANNEL:
        return handoff.CHANNEL
    preferred = "email" if score.recommended_channel == "email" else "sms"
    for channel in (preferred, "email" if preferred == "sms" else "sms"):
        if state.profile.can_reach(channel):
            return channel
    return None


def job_id_for(location_id: str, contact_id: str, score: PredictiveSellScore, now: datetime) -> str:
    """Stable for a lead and slot: its local day and contact window (urgent: its 4-hour block)."""
    local = now.astimezone(ZoneInfo(score.timezone))
    if score.intent_level == "urgent":
        slot = f"u{local.hour // URGENT_BLOCK_HOURS}"
    else:
        slot = f"w{score.optimal_contact_window[0]}"
    return f"{location_id}:{contact_id}:{local.date().isoformat()}:{slot}"


@dataclass(frozen=True, slots=True)
class Decision:
    job: Job | None
    reason: str | None  # why not, when no job


def decide(
    location_id: str,
    contact_id: str,
    state: LeadState,
    followups: LeadFollowups,
    limit: guardrails.SendLimits,
    now: datetime,
    config: Settings,
    source: str,
    asked_for_agent: bool = False,
) -> Decision:
    """Whether this lead gets a follow-up job now, and the job: a message, or a `call` job (a
    handoff to its agent) when a call is recommended or the lead just asked for an agent. Pure."""
    score = score_lead(contact_id, state, now, config.sending_hours, config.default_timezone)
    channel = handoff.CHANNEL if asked_for_agent else choose_channel(state, score)
    if channel is None:
        return Decision(None, guardrails.OPTED_OUT)
    if channel == handoff.CHANNEL:
        reason = handoff.blocked(state)
    else:
        reason = guardrails.blocked(state, channel, now, followups.counts, limit)
    if reason:
        return Decision(None, reason)
    if followups.pending:
        return Decision(None, "pending")
    if (
        source == "monitor"
        and score.intent_level != "urgent"
        and not guardrails.in_hours(limit, score.optimal_contact_window)
    ):
        return Decision(None, "outside_window")
    # The monitor and the fast path share the slot's id: a lead gets one of the two, not both.
    if channel == handoff.CHANNEL:
        job_id = handoff.job_id(location_id, contact_id, score, now)
    else:
        job_id = job_id_for(location_id, contact_id, score, now)
    return Decision(Job.for_score(job_id, location_id, score, channel, source, triggered_at=state.last_event), None)


def fast_path_eligible(likelihood_score: float, signal: Signal | None) -> bool:
    """Urgent now, or a hot lead replying or asking for an agent: worth acting in seconds, not minutes."""
    return likelihood_score >= 80 or handoff.asks_for_agent(likelihood_score, signal)


def queue_fast_path(
    location_id: str,
    contact_id: str,
    state: LeadState,
    likelihood: float,
    signal: Signal | None,
    now: float,
    followup_store: FollowupStore | None = None,
) -> str | None:
    """Called by the webhook after recording an event: queue a job at once when the lead qualifies
    and every guardrail allows. Returns the job id, or None."""
    if not fast_path_eligible(likelihood, signal):
        return None
    config = settings()
    fstore = followup_store or FollowupStore()
    at = datetime.fromtimestamp(now, UTC)
    limit = guardrails.limits(state, at, config)
    followups = fstore.followups(location_id, {contact_id: limit.day_start}, now)[contact_id]
    asked = handoff.asks_for_agent(likelihood, signal)
    decision = decide(location_id, contact_id, state, followups, limit, at, config, "fast_path", asked)
    if asked and decision.job is None:  # no task for this lead (opted out of calls, say): a message, if allowed
        decision = decide(location_id, contact_id, state, followups, limit, at, config, "fast_path")
    if decision.job is None:
        logger.info("fast path: no job", extra={"reason": decision.reason, "location_id": location_id})
        return None
    outcomes = _queue(location_id, [decision.job], fstore)
    return decision.job.job_id if outcomes["queued"] else None


def _queue(location_id: str, jobs: Sequence[Job], fstore: FollowupStore) -> Counter[str]:
    """Claim each lead's in-flight slot, queue the claimed jobs, undo the claims SQS refused.

    Returns how many were queued, and why the others were not: `pending` (another job in flight),
    `already_queued` (this slot's job was queued before), `queue_failed` (SQS refused it)."""
    claims = fstore.claim(location_id, [(job.lead_id, job.job_id) for job in jobs])
    outcomes = Counter("already_queued" if c == "duplicate" else c for c in claims.values() if c != "ok")
    claimed = [job for job in jobs if claims.get(job.job_id) == "ok"]
    failed = send_jobs(claimed) if claimed else []
    if failed:
        fstore.unclaim(location_id, [(job.lead_id, job.job_id) for job in failed])
        logger.warning("jobs not queued", extra={"count": len(failed), "location_id": location_id})
    queued = [job for job in claimed if job not in failed]
    if queued:
        fstore.count_queued(location_id, len(queued))
    for (source, channel), n in Counter((job.source, job.channel) for job in queued).items():
        count("JobsQueued", n, source=source, channel=channel)
    outcomes["queued"] = len(queued)
    outcomes["queue_failed"] = len(failed)
    return +outcomes


@dataclass(slots=True)
class MonitorReport:
    enabled: bool = True
    held_for_replay: bool = False  # spilled events waited on the intake queue: nothing queued
    locations: int = 0
    candidates: int = 0
    eligible: int = 0
    queued: int = 0
    expired: int = 0  # index entries of leads whose data had ended, removed
    skipped: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    run: str | None = None  # a fanned-out run's id (its scheduled time)
    shards: int = 0  # shards of a fanned-out run (0: one invocation did the whole run)
    shard: int | None = None  # which shard this invocation did
    already_done: bool = False  # a redelivered shard, finished before: nothing done


def run_monitor(
    now: datetime | None = None,
    store: LeadStore | None = None,
    followup_store: FollowupStore | None = None,
    scheduled: str | None = None,
) -> MonitorReport:
    """One scheduled run: for every location, rescore the index's candidates now and queue one job
    per lead that qualifies, highest intent first. A run with more candidates than one invocation
    should rescore is fanned out instead (monitor_shards): this invocation queues its shards, and
    `run_shard` does each. `scheduled` is the schedule event's time, the run's id."""
    started = time.perf_counter()
    now = now or datetime.now(UTC)
    config = settings()
    store = store or LeadStore()
    fstore = followup_store or FollowupStore(store.cache)
    report = MonitorReport()
    at = now.timestamp()
    if not _may_queue(report, fstore, at):
        return report
    locations = store.locations()
    report.locations = len(locations)
    for location_id in locations:
        report.expired += store.sweep_expired(location_id, at)
    if config.monitor_shard_queue_url:
        counts = monitor_shards.candidate_counts(store.cache, locations, config.min_likelihood)
        if sum(counts.values()) > config.monitor_shard_leads:
            report.run = monitor_shards.run_id(scheduled, now)
            report.candidates = sum(counts.values())
            report.shards = monitor_shards.fan_out(
                store.cache,
                report.run,
                counts,
                config.min_likelihood,
                config.monitor_shard_leads,
                config.monitor_shard_queue_url,
            )
            count("MonitorShards", report.shards, outcome="queued")
            report.seconds = round(time.perf_counter() - started, 3)
            return report
    for location_id in locations:
        pages = store.candidates(location_id, config.min_likelihood)
        _scan(location_id, pages, now, config, store, fstore, report)
    report.seconds = round(time.perf_counter() - started, 3)
    return report


def run_shard(
    shard: monitor_shards.Shard,
    lease_seconds: float,
    now: datetime | None = None,
    store: LeadStore | None = None,
    followup_store: FollowupStore | None = None,
) -> MonitorReport:
    """One shard of a fanned-out run, at most once: a shard finished before does nothing; one that
    another invocation is doing raises ShardBusy (SQS delivers it again later). The same guardrails,
    job ids and claims as a whole run."""
    started = time.perf_counter()
    now = now or datetime.now(UTC)
    config = settings()
    store = store or LeadStore()
    fstore = followup_store or FollowupStore(store.cache)
    report = MonitorReport(run=shard.run, shards=shard.count, shard=shard.index)
    taken = monitor_shards.claim(store.cache, shard, lease_seconds)
    if taken.outcome == monitor_shards.DONE:
        report.already_done = True
        count("MonitorShards", outcome="repeated")
        return report
    if taken.outcome == monitor_shards.BUSY:
        raise monitor_shards.ShardBusy(f"shard {shard.index} of run {shard.run} is being done elsewhere")
    try:
        if _may_queue(report, fstore, now.timestamp()):
            for part in shard.parts:
                report.locations += 1
                pages: Iterable[list[tuple[str, float]]]
                if part.split:
                    pages = monitor_shards.snapshot_pages(store.cache, part, shard.run)
                    # the location's write-back budget, shared by its pieces
                    budget = writeback.MONITOR_BUDGET // part.pieces
                    budget += int(part.piece < writeback.MONITOR_BUDGET % part.pieces)
                    _scan(part.location_id, pages, now, config, store, fstore, report, budget, part.piece == 0)
                    monitor_shards.piece_done(store.cache, part, shard.run)
                else:
                    pages = store.candidates(part.location_id, config.min_likelihood)
                    _scan(part.location_id, pages, now, config, store, fstore, report)
    except BaseException:
        with contextlib.suppress(Exception):  # else its lease ends it
            monitor_shards.give_back(store.cache, taken)
        raise
    monitor_shards.finish(store.cache, taken)
    count("MonitorShards", outcome="done")
    report.seconds = round(time.perf_counter() - started, 3)
    return report


def _may_queue(report: MonitorReport, fstore: FollowupStore, at: float) -> bool:
    """Monitoring is on and no spilled event waits for replay (a STOP may be one); else say why not."""
    if not fstore.monitoring_enabled():
        report.enabled = False
        return False
    if replay_pending(at):
        report.held_for_replay = True
        logger.warning("spilled events wait for replay: the monitor queues nothing this run")
        return False
    return True


def _scan(
    location_id: str,
    pages: Iterable[list[tuple[str, float]]],
    now: datetime,
    config: Settings,
    store: LeadStore,
    fstore: FollowupStore,
    report: MonitorReport,
    writeback_budget: int = writeback.MONITOR_BUDGET,
    drain_waiting: bool = True,
) -> None:
    """Rescore one location's candidates (pages of the index, highest first), tighten the index,
    queue their write-backs and one job per lead that qualifies, highest intent first."""
    at = now.timestamp()
    jobs: list[Job] = []
    fresh: dict[str, float] = {}
    gone: list[str] = []
    for page in pages:
        report.candidates += len(page)
        states = store.load_many(location_id, [cid for cid, _ in page])
        gone += [cid for cid, _ in page if cid not in states]
        hot: dict[str, LeadState] = {}
        for cid, state in states.items():
            fresh[cid] = likelihood(state, at)
            if fresh[cid] >= config.min_likelihood:
                hot[cid] = state
        limits = {cid: guardrails.limits(state, now, config) for cid, state in hot.items()}
        followups = fstore.followups(location_id, {cid: limit.day_start for cid, limit in limits.items()}, at)
        for cid, state in hot.items():
            decision = decide(location_id, cid, state, followups[cid], limits[cid], now, config, "monitor")
            if decision.job:
                jobs.append(decision.job)
            else:
                reason = decision.reason or "unknown"
                report.skipped[reason] = report.skipped.get(reason, 0) + 1
    store.refresh_index(location_id, fresh, gone)
    writeback.monitor_pass(location_id, fresh, at, writeback_budget, drain_waiting)  # never raises
    for level, n in Counter(intent_level(score) for score in fresh.values()).items():
        count("LeadsByIntent", n, intent=level)
    jobs.sort(key=lambda job: -job.likelihood_score)
    report.eligible += len(jobs)
    if jobs and not fstore.monitoring_enabled():  # switched off while this run read the leads
        report.enabled = False
        return
    if jobs:
        outcomes = _queue(location_id, jobs, fstore)
        report.queued += outcomes.pop("queued", 0)
        for reason, n in outcomes.items():
            report.skipped[reason] = report.skipped.get(reason, 0) + n
