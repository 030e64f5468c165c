"""Scoring throughput on the common workload (../shared/bench/workload.py), on one core.

Prints the workload fingerprint, then leads per second for:
- raw `activity_data` scored as the POST route does (parse, count, score, JSON-ready dict);
  goal: 50,000/s;
- rescoring from stored counters as the monitor does: `scoring.likelihood` (its filter) and the full
  explainable `score_lead`; goal: 100,000/s;
each against a naive seed-style scorer written here, in the same run: it keeps the raw events,
parses every timestamp and replays every event on every call, then explains the score the same way
(so both produce the same output). Each figure is the median of 3 runs, in CPU time of this process
pinned to one core (the machine may be shared). `now` is fixed, so figures compare across versions.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from leadflow.activity import state_from_activity
from leadflow.config import settings
from leadflow.lead import LeadState
from leadflow.leads import score_activity
from leadflow.scoring import likelihood, score_lead
from leadflow.signals import BY_ACTIVITY_KEY

ROOT = Path(__file__).resolve().parent.parent

NOW = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)
RUNS = 3


def one_core() -> str:
    """Pin this process to one CPU, so the figures are per core."""
    if hasattr(os, "sched_setaffinity"):
        cpu = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})
        return f"cpu {cpu}"
    return "unpinned"


# The baseline: a seed-style scorer that keeps the raw events and replays every one on every call.


def naive_events(activity: dict[str, Any]) -> dict[str, list[float]]:
    """Parse the seed's activity_data the straightforward way: every timestamp, every time."""
    out: dict[str, list[float]] = {}
    for key, items in activity.items():
        if key not in BY_ACTIVITY_KEY:
            continue
        times = []
        for item in items:
            if key == "email_interactions" and item.get("opened") is False:
                continue
            stamp = datetime.fromisoformat(item["timestamp"])
            if stamp.tzinfo is None:
                stamp = stamp.replace(tzinfo=UTC)
            times.append(stamp.timestamp())
        out[key] = times
    return out


def replay(events: dict[str, list[float]]) -> LeadState:
    """Rebuild a lead's counters by replaying every event, one at a time, as a scorer without
    stored counters must on every call."""
    state = LeadState()
    for key, times in events.items():
        signal = BY_ACTIVITY_KEY[key].signal
        for t in times:
            state.add(signal, t)
    return state


def rate(run: Callable[[], object], n: int) -> float:
    """Leads per CPU-second of this process (pinned to one core), the median of RUNS runs."""
    timings = []
    for _ in range(RUNS):
        started = time.process_time()
        run()
        timings.append(time.process_time() - started)
    return n / statistics.median(timings)


def line(label: str, leads_per_second: float, baseline: float, goal: float | None = None) -> None:
    goal_text = f"  goal {goal:,.0f}/s {'met' if leads_per_second >= goal else 'MISSED'}" if goal else ""
    print(
        f"{label:<44} {leads_per_second:>12,.0f} leads/s   naive replay {baseline:>10,.0f}/s"
        f"   x{leads_per_second / baseline:.1f}{goal_text}"
    )


def main() -> None:
    import shared_workload  # beside this script: ../shared/bench/workload.py, or a plain exit

    workload = shared_workload.load()
    pinned = one_core()
    leads = workload.generate(now=NOW)
    n = len(leads)
    at = NOW.timestamp()
    config = settings()
    hours, zone = config.sending_hours, config.default_timezone
    events = sum(len(items) for _, activity in leads for items in activity.values())
    print(f"workload {workload.fingerprint()}: {n:,} leads, {events:,} events, now {NOW.isoformat()}, {pinned}")
    print(f"python {sys.version.split()[0]}, leads per CPU-second (process time, one core), median of {RUNS} runs")

    # 1. The POST route: raw activity_data -> PredictiveSellScore JSON.
    def post_route() -> None:
        for lead_id, activity in leads:
            score_activity(lead_id, activity, NOW).to_json()

    def naive_post() -> None:
        for lead_id, activity in leads:
            score_lead(lead_id, replay(naive_events(activity)), NOW, hours, zone).to_json()

    line("raw activity_data, as POST /score does", rate(post_route, n), rate(naive_post, n), 50_000)

    # 2. The monitor: stored counters (as loaded from Redis) -> likelihood, then the full score.
    states: list[tuple[str, LeadState]] = [(lead_id, state_from_activity(a)) for lead_id, a in leads]
    replays = [naive_events(activity) for _, activity in leads]

    def monitor_filter() -> None:
        for _, state in states:
            likelihood(state, at)

    def naive_filter() -> None:
        for evts in replays:
            likelihood(replay(evts), at)

    def monitor_full() -> None:
        for lead_id, state in states:
            score_lead(lead_id, state, NOW, hours, zone)

    def naive_full() -> None:
        for (lead_id, _), evts in zip(states, replays, strict=True):
            score_lead(lead_id, replay(evts), NOW, hours, zone)

    line("stored counters: likelihood (monitor filter)", rate(monitor_filter, n), rate(naive_filter, n), 100_000)
    line("stored counters: full score_lead", rate(monitor_full, n), rate(naive_full, n), 100_000)


if __name__ == "__main__":
    main()
