"""The monitor fanned out: 1,000,000 stored leads in 100 locations, one run in shards, and the same
run done by one invocation on the same data, against a real redis-server.

Prints the bulk load, the plan (shards, their sizes), the time of the scheduled invocation that
plans the run, each shard's time (median, max), the run's total with shards in parallel up to the
monitor's MonitorMaxConcurrency (the template's default; the shards measured one after another here,
so a shard's time does not include waiting for other shards' Redis commands), whether that fits the
monitoring interval, the single invocation's time on the same data, and whether both queue the same
jobs.

The leads are the common workload's 20,000 (../shared/bench/workload.py), each stored 50 times under
other ids and spread over the locations, at noon local time (the hours guardrail lets them through).
SQS is a stand-in that records each SendMessageBatch call and waits SQS_LATENCY seconds (an assumed
round trip, not a measurement of SQS), as in bench/monitor.py.

    .venv/bin/python bench/fanout.py [--leads 1000000] [--locations 100] [--shard-leads 50000]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "layers" / "common")]

SQS_LATENCY = 0.015
FOLLOWUPS = "https://sqs.us-east-1.amazonaws.com/123456789012/leadflow-followups"
SHARDS = "https://sqs.us-east-1.amazonaws.com/123456789012/leadflow-monitor-shards"
LOAD_BATCH = 10_000  # commands per pipeline of the bulk loader


def main() -> None:
    from leadflow.config import DEFAULT_SHARD_LEADS

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--leads", type=int, default=1_000_000)
    parser.add_argument("--locations", type=int, default=100)
    parser.add_argument("--shard-leads", type=int, default=DEFAULT_SHARD_LEADS, help="MONITOR_SHARD_LEADS")
    args = parser.parse_args()

    import shared_workload  # beside this script

    workload = shared_workload.load()  # before anything starts: a missing file is a plain exit
    from tests.helpers import RedisServer

    server = RedisServer()
    server.start()
    os.environ.update(
        {"REDIS_URL": server.url, "AWS_DEFAULT_REGION": "us-east-1", "GHL_LOCATION_ID": "loc-000",
         "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "POWERTOOLS_METRICS_NAMESPACE": "leadflow",
         "POWERTOOLS_LOG_LEVEL": "WARNING",
         "FOLLOWUP_QUEUE_URL": FOLLOWUPS, "MONITOR_SHARD_LEADS": str(args.shard_leads)}
    )  # fmt: skip
    try:
        run(args, workload, server.url)
    finally:
        server.stop()


class StandInSQS:
    """Records SendMessageBatch calls (each waits SQS_LATENCY seconds) and the bodies, by queue."""

    def __init__(self) -> None:
        self.calls = 0
        self.bodies: dict[str, list[str]] = {}
        self._lock = threading.Lock()

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, str]]) -> dict[str, list[object]]:
        time.sleep(SQS_LATENCY)
        with self._lock:
            self.calls += 1
            self.bodies.setdefault(QueueUrl, []).extend(entry["MessageBody"] for entry in Entries)
        return {"Successful": [], "Failed": []}

    def take(self, url: str) -> list[str]:
        with self._lock:
            return self.bodies.pop(url, [])


def bulk_load(url: str, workload: Any, n: int, locations: int, now: datetime) -> tuple[int, float]:
    """`n` leads (the workload's, repeated under other ids) over `locations`; returns the number of
    index entries at or above MIN_LIKELIHOOD, and the seconds it took. Each distinct lead's hash (as
    LeadStore writes it, encode_state) is written once and DUMPed; every stored lead is a pipelined
    RESTORE of its payload (four times the rate of HSETs of its fields here), and each location's
    index and expiry set one ZADD each."""
    import redis

    from leadflow.activity import state_from_activity
    from leadflow.config import settings
    from leadflow.lead_state import LOCATIONS, encode_state, expiry_key, index_key, lead_key
    from leadflow.scoring import likelihood
    from tests.helpers import zone_at

    started = time.perf_counter()
    at = now.timestamp()
    zone = zone_at(12, at)
    client: Any = redis.Redis.from_url(url, socket_timeout=60)
    pipe = client.pipeline(transaction=False)
    scores = []
    distinct = workload.generate(n=min(n, 20_000), now=now)
    for i, (_, activity) in enumerate(distinct):
        state = state_from_activity(activity)
        state.profile.timezone = zone  # noon for every lead: the hours guardrail lets them through
        pipe.hset(f"bench:lead:{i}", mapping=encode_state(state))
        pipe.dump(f"bench:lead:{i}")
        pipe.delete(f"bench:lead:{i}")
        scores.append(likelihood(state, at))
    payloads = pipe.execute()[1::3]
    expires = at + settings().lead_ttl_days * 86_400
    per_location = -(-n // locations)
    candidates = 0
    for j in range(locations):
        location_id = f"loc-{j:03d}"
        index: dict[str, float] = {}
        for i in range(j * per_location, min(n, (j + 1) * per_location)):
            contact_id = f"lead-{i:07d}"
            pipe.restore(lead_key(location_id, contact_id), 0, payloads[i % len(payloads)])
            index[contact_id] = scores[i % len(scores)]
            if len(pipe) >= LOAD_BATCH:
                pipe.execute()
        pipe.zadd(index_key(location_id), index)
        pipe.zadd(expiry_key(location_id), dict.fromkeys(index, expires))
        pipe.sadd(LOCATIONS, location_id)
        candidates += sum(score >= settings().min_likelihood for score in index.values())
    pipe.execute()
    return candidates, time.perf_counter() - started


def reset_followups(url: str) -> int:
    """Delete what a run wrote beside the leads and their index (job claims, write-back markers, the
    run's plan and shard claims), so that the next run starts from the same data. Returns how many keys."""
    import redis

    client = redis.Redis.from_url(url, socket_timeout=60, decode_responses=True)
    keep = (":lead", ":scores", ":expires")
    doomed = [key for key in client.scan_iter(count=10_000) if not key.endswith(keep) and key != "lf:locations"]
    for i in range(0, len(doomed), LOAD_BATCH):
        client.unlink(*doomed[i : i + LOAD_BATCH])
    return len(doomed)


def parallel_makespan(times: list[float], workers: int) -> float:
    """Shards started in queue order on `workers` instances, each taking the next when free."""
    free = [0.0] * max(1, workers)
    for t in times:
        i = free.index(min(free))
        free[i] += t
    return max(free)


def jobs_of(sqs: StandInSQS) -> set[str]:
    return {str(json.loads(body)["job_id"]) for body in sqs.take(FOLLOWUPS) if "kind" not in body[:12]}


def quietly() -> contextlib.redirect_stdout[Any]:
    """The functions' EMF metrics (JSON lines on stdout, as Lambda takes them) out of the figures' way."""
    return contextlib.redirect_stdout(io.StringIO())


def run(args: argparse.Namespace, workload: Any, url: str) -> None:
    from leadflow import jobs, monitor_shards, writeback
    from leadflow.config import settings
    from leadflow.followup import run_monitor, run_shard
    from local.template import read

    now = datetime.now(UTC)
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} CPUs)")
    candidates, seconds = bulk_load(url, workload, args.leads, args.locations, now)
    print(
        f"workload {workload.fingerprint(min(args.leads, 20_000))} x {-(-args.leads // 20_000)}: "
        f"{args.leads:,} leads in {args.locations} locations stored in {seconds:.1f} s "
        f"({args.leads / seconds:,.0f} leads/s, pipelined RESTORE + ZADD); {candidates:,} index entries "
        f">= MIN_LIKELIHOOD {settings().min_likelihood:g}"
    )

    sqs, sync_sqs = StandInSQS(), StandInSQS()
    jobs.sqs = lambda: sqs  # type: ignore[assignment]
    writeback._sqs = lambda: sync_sqs  # type: ignore[assignment]  # write-backs, counted apart
    defaults = read().parameter_defaults()
    concurrency = int(defaults["MonitorMaxConcurrency"])
    interval = settings().behavioral_monitoring_interval

    # The sharded run: the scheduled invocation plans, then each shard as its own invocation would do it.
    os.environ["MONITOR_SHARD_QUEUE_URL"] = SHARDS
    settings.cache_clear()
    started = time.perf_counter()
    with quietly():
        planned = run_monitor(now=now, scheduled=now.strftime("%Y-%m-%dT%H:%M:%SZ"))
    plan_seconds = time.perf_counter() - started
    shards = [monitor_shards.Shard.from_json(body) for body in sqs.take(SHARDS)]
    split = sum(1 for shard in shards if any(part.split for part in shard.parts))
    print(
        f"\nsharded run, MONITOR_SHARD_LEADS={args.shard_leads:,}: the scheduled invocation planned "
        f"{planned.shards} shards ({split} of them ranges of a split location) for {planned.candidates:,} "
        f"candidates in {plan_seconds:.2f} s (sweep, counts, plan, {-(-planned.shards // 10)} SendMessageBatch)"
    )
    times, cpu, queued, rescored = [], [], 0, 0
    for shard in shards:
        started, began = time.perf_counter(), time.process_time()
        with quietly():
            report = run_shard(shard, lease_seconds=300, now=now)
        times.append(time.perf_counter() - started)
        cpu.append(time.process_time() - began)
        queued += report.queued
        rescored += report.candidates
    started = time.perf_counter()
    with quietly():
        repeated = run_shard(shards[0], lease_seconds=300, now=now)
    repeat_ms = (time.perf_counter() - started) * 1000
    sharded_jobs = jobs_of(sqs)
    makespan = parallel_makespan(times, concurrency)
    total = plan_seconds + makespan
    print(
        f"  per shard: median {statistics.median(times):.2f} s, max {max(times):.2f} s, "
        f"min {min(times):.2f} s; {rescored:,} candidates rescored ({rescored / sum(times):,.0f}/s per invocation)"
    )
    print(
        f"  this process's CPU per shard (what a busy machine's wall time hides): median "
        f"{statistics.median(cpu):.2f} s, max {max(cpu):.2f} s ({rescored / sum(cpu):,.0f} candidates per CPU-second)"
    )
    print(f"  shards one after another: {sum(times):.1f} s; jobs queued {queued:,}")
    print(
        f"  in parallel, at most {concurrency} at once (MonitorMaxConcurrency): {makespan:.1f} s of shards "
        f"+ {plan_seconds:.2f} s planning = {total:.1f} s: "
        f"{'fits' if total <= interval else 'does NOT fit'} the {interval} s interval"
    )
    print(f"  a shard delivered again: already done, nothing queued ({repeated.already_done}), {repeat_ms:.1f} ms")

    # The same run in one invocation, on the same data.
    removed = reset_followups(url)
    os.environ.pop("MONITOR_SHARD_QUEUE_URL")
    settings.cache_clear()
    started, began = time.perf_counter(), time.process_time()
    with quietly():
        single = run_monitor(now=now)
    single_seconds = time.perf_counter() - started
    single_cpu = time.process_time() - began
    single_jobs = jobs_of(sqs)
    print(
        f"\nsingle invocation on the same data ({removed:,} keys of the sharded run's claims removed first): "
        f"{single_seconds:.1f} s for {single.candidates:,} candidates ({single.candidates / single_seconds:,.0f}/s); "
        f"jobs queued {single.queued:,}; {'fits' if single_seconds <= interval else 'does NOT fit'} the "
        f"{interval} s interval, and the monitor's 120 s timeout {'holds' if single_seconds < 120 else 'does NOT'}"
    )
    print(f"  this process's CPU: {single_cpu:.1f} s (sharded: {sum(cpu):.1f} s over all shards)")
    same = sharded_jobs == single_jobs
    print(f"same jobs (ids) sharded and single: {same} ({len(sharded_jobs):,} and {len(single_jobs):,})")
    print(
        f"SQS stand-in, each SendMessageBatch waiting {SQS_LATENCY * 1000:.0f} ms: {sqs.calls:,} calls for jobs and "
        f"shards (eight in parallel), {sync_sqs.calls:,} for write-backs (one after another), both runs"
    )
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
