"""One monitor run over 100,000 stored leads against a real redis-server and moto SQS.

Prints the wall time of loading the leads and of the run, leads per second, jobs queued, and the
SQS calls made against the minimum (jobs / 10, SendMessageBatch's limit).

SQS is a stand-in client that records each SendMessageBatch call and waits SQS_LATENCY seconds
(an assumed round trip, not a measurement of SQS), so the figure shows the parallel writer at work;
moto's SQS was not usable here: its per-message attribute bookkeeping grows with the queue.

    .venv/bin/python bench/monitor.py [--leads 100000] [--min-likelihood 50]
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "layers" / "common")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--leads", type=int, default=100_000)
    parser.add_argument(
        "--min-likelihood", type=float, default=50.0, help="MIN_LIKELIHOOD; 0 makes every stored lead a candidate"
    )
    args = parser.parse_args()
    os.environ["MIN_LIKELIHOOD"] = str(args.min_likelihood)

    import shared_workload  # beside this script

    workload = shared_workload.load()  # before anything starts: a missing file is a plain exit
    from tests.helpers import RedisServer, zone_at

    server = RedisServer()
    server.start()
    os.environ.update(
        {"REDIS_URL": server.url, "AWS_DEFAULT_REGION": "us-east-1", "GHL_LOCATION_ID": "loc-1",
         "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "POWERTOOLS_METRICS_NAMESPACE": "leadflow"}
    )  # fmt: skip
    os.environ["FOLLOWUP_QUEUE_URL"] = "https://sqs.us-east-1.amazonaws.com/123456789012/leadflow-followups"
    try:
        run(args.leads, workload, zone_at(12))
    finally:
        server.stop()


SQS_LATENCY = 0.015


class StandInSQS:
    """Records SendMessageBatch calls; each takes SQS_LATENCY seconds."""

    def __init__(self) -> None:
        self.calls = 0
        self.messages = 0
        self._lock = threading.Lock()

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, str]]) -> dict[str, list[object]]:
        time.sleep(SQS_LATENCY)
        with self._lock:
            self.calls += 1
            self.messages += len(Entries)
        return {"Successful": [], "Failed": []}


def run(n: int, workload: object, zone: str) -> None:
    from leadflow import jobs, writeback
    from leadflow.activity import state_from_activity
    from leadflow.followup import run_monitor
    from leadflow.lead_state import LeadStore

    now = datetime.now(UTC)
    store = LeadStore()
    started = time.perf_counter()
    leads = workload.generate(n=n, now=now)  # type: ignore[attr-defined]
    for start in range(0, n, 5000):
        states = {}
        for lead_id, activity in leads[start : start + 5000]:
            state = state_from_activity(activity)
            state.profile.timezone = zone  # noon for every lead: the hours guardrail lets them through
            states[lead_id] = state
        store.store_many("loc-1", states, now.timestamp())
    loaded = time.perf_counter() - started
    print(f"workload {workload.fingerprint(n)}: {n:,} leads stored in {loaded:.1f} s")  # type: ignore[attr-defined]

    sqs, sync_sqs = StandInSQS(), StandInSQS()
    jobs.sqs = lambda: sqs  # type: ignore[assignment]
    writeback._sqs = lambda: sync_sqs  # type: ignore[assignment]  # write-backs, counted apart
    started = time.perf_counter()
    report = run_monitor(now=now, store=store)
    wall = time.perf_counter() - started
    minimum = -(-report.queued // 10)
    print(
        f"monitor run: {wall:.2f} s wall for {n:,} stored leads ({n / wall:,.0f} leads/s); "
        f"{report.candidates:,} candidates from the index rescored ({report.candidates / wall:,.0f}/s)"
    )
    print(f"  jobs queued {report.queued:,}; skipped {dict(sorted(report.skipped.items()))}")
    print(
        f"  SQS SendMessageBatch calls {sqs.calls:,} for {sqs.messages:,} jobs (minimum {minimum:,}: jobs / 10); "
        f"each call waits {SQS_LATENCY * 1000:.0f} ms"
    )
    print(
        f"  write-backs queued {sync_sqs.messages:,} in {sync_sqs.calls:,} calls "
        f"(at most {writeback.MONITOR_BUDGET} a run and location; the others wait for the next run)"
    )
    started = time.perf_counter()
    again = run_monitor(now=now, store=store)
    print(
        f"second run: {time.perf_counter() - started:.2f} s, jobs queued {again.queued} (a repeated run queues nothing)"
    )


if __name__ == "__main__":
    main()
