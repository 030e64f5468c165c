"""Speed to lead on the local stack: from the webhook that makes a lead urgent to its follow-up job
on the queue, and to its message in the outbox.

Starts the local stack itself (`python -m local`, its own redis-server and moto), switches the
monitor off (PUT /followups/monitoring: the fast path alone is measured), then for each of N leads:
a signed GHL ContactCreate (a home-value form: an agent inquiry) and one signed batch of activity
(pricing tool x2, neighbourhood research, a market report) leave it hot (78); one more pricing-tool
event, timed, makes it urgent (80+), and the webhook's fast path queues its job.

- queued: the trigger webhook's round trip. The fast path sends the job to SQS inside that request,
  so the job is on the queue when the reply arrives (checked: each lead's job mark is in Redis).
- sent: from the same start to the follow-up's entry in the lead's history (its `at`, stamped by the
  send function when it takes the job), read back over GET /leads/{id}/messages: a message `sent`,
  or, as these leads asked for an agent (the form) and a call is recommended, the agent's task
  `handed_off`. The send function can take the job before the webhook's reply reaches the client, so
  `sent` can be below `queued`.

The seed's design has no fast path: a lead waits for the next monitor run, up to its interval
(BEHAVIORAL_MONITORING_INTERVAL, 300 s), then the send. Goals: queued within 1 s, sent within 5 s.

    python bench/speed_to_lead.py [--leads 300] [--rate 25] [--workers 4]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "layers" / "common")]

from leadflow.cli import activity_event, ghl_event, sign_activity, sign_ghl  # noqa: E402
from leadflow.lead_state import lead_prefix  # noqa: E402
from local.demo import daytime_zone  # noqa: E402
from local.keys import LocalKeys, ensure  # noqa: E402
from local.launch import launch  # noqa: E402

SEED_INTERVAL = 300
WARM_UP = ["pricing_tool_usage", "pricing_tool_usage", "neighborhood_research", "market_report_engagement"]
TRIGGER = "pricing_tool_usage"
DROPPED = ("REDIS_URL", "REDIS_CLUSTER", "GHL_API_KEY", "ANTHROPIC_API_KEY", "SEND_MODE")


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


class Bench:
    def __init__(self, base: str, keys: LocalKeys, location_id: str, zone: str) -> None:
        import httpx

        self.base, self.keys, self.location_id, self.zone = base, keys, location_id, zone
        self.local = threading.local()
        self.httpx = httpx
        self.token = keys.token(subject="bench")

    @property
    def http(self) -> Any:
        client = getattr(self.local, "client", None)
        if client is None:
            client = self.local.client = self.httpx.Client(base_url=self.base, timeout=60)
        return client

    def _post(self, route: str, body: bytes, headers: dict[str, str]) -> None:
        reply = self.http.post(f"/webhooks/{route}", content=body, headers=headers)
        if reply.status_code != 200:
            raise RuntimeError(f"/webhooks/{route}: {reply.status_code} {reply.text}")

    def warm_up(self, contact_id: str) -> None:
        contact = ghl_event(
            "ContactCreate", self.location_id, contact_id, firstName="Lee", phone="+16175550100",
            email="lee@example.com", source="Home Value Form", timezone=self.zone,
        )  # fmt: skip
        body = json.dumps(contact).encode()
        self._post("ghl", body, sign_ghl(body, self.keys.ghl_private_pem))
        events = [activity_event(self.location_id, contact_id, signal) for signal in WARM_UP]
        body = json.dumps({"events": events}).encode()
        self._post("activity", body, sign_activity(body, self.keys.signing_secret))

    def trigger(self, contact_id: str) -> tuple[float, float]:
        """Send the event that makes the lead urgent; (start, reply) epoch seconds."""
        body = json.dumps(activity_event(self.location_id, contact_id, TRIGGER)).encode()
        headers = sign_activity(body, self.keys.signing_secret)
        started = time.time()
        self._post("activity", body, headers)
        return started, time.time()

    def api(self, method: str, path: str, body: Any = None) -> Any:
        reply = self.http.request(
            method, path, params={"location_id": self.location_id},
            headers={"authorization": f"Bearer {self.token}"}, json=body,
        )  # fmt: skip
        reply.raise_for_status()
        return reply.json()


def run(leads: int, rate: float, workers: int) -> None:
    import redis

    state_dir = Path(tempfile.mkdtemp(prefix="leadflow-bench-"))
    stack = launch(SEED_INTERVAL, state_dir / "stack.log", state_dir=state_dir, drop_env=DROPPED)
    try:
        health, base = stack.health, stack.base
        bench = Bench(base, ensure(state_dir), f"bench-{uuid.uuid4().hex[:6]}", daytime_zone())
        bench.api("PUT", "/followups/monitoring", {"enabled": False})
        ids = [f"lead-{i:04d}" for i in range(leads)]
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(bench.warm_up, ids))

        # The triggers, paced at `rate` leads a second across `workers` clients.
        times: dict[str, tuple[float, float]] = {}
        began = time.monotonic()

        def fire(index_and_id: tuple[int, str]) -> None:
            index, contact_id = index_and_id
            delay = began + index / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            times[contact_id] = bench.trigger(contact_id)

        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(fire, enumerate(ids)))
        offered = leads / max(1e-9, time.monotonic() - began)

        client = redis.Redis.from_url(health["redis_url"], decode_responses=True)
        queued_ids = {cid for cid in ids if client.keys(f"{lead_prefix(bench.location_id, cid)}:job:*")}

        sent: dict[str, float] = {}
        deadline = time.monotonic() + 60
        while len(sent) < len(queued_ids) and time.monotonic() < deadline:
            for cid in sorted(queued_ids - set(sent)):
                history = bench.api("GET", f"/leads/{cid}/messages")["messages"]
                done = [m for m in history if m["status"] in ("sent", "handed_off")]
                if done:
                    sent[cid] = datetime.fromisoformat(done[-1]["at"].replace("Z", "+00:00")).timestamp()
            time.sleep(0.2)
        stats = bench.api("GET", "/followups/stats")
    finally:
        stack.stop()

    queued = [times[cid][1] - times[cid][0] for cid in ids if cid in queued_ids]
    to_sent = [sent[cid] - times[cid][0] for cid in sent]
    print(f"speed to lead, local stack: {leads} leads made urgent by a webhook each, offered at {offered:.0f}/s")
    print(f"  ({workers} concurrent clients; one webhook and one send worker, like reserved concurrency 1;")
    print(
        f"   monitor off; the job is on the queue when the trigger's reply arrives; send mode {stats.get('send_mode')};"
    )
    print("   sent = when the send function took the job, which can precede the reply reaching the client)")
    print(f"  jobs queued by the fast path: {len(queued)}/{leads}; followed up: {len(to_sent)}/{leads}", end="")
    print(f" (agent tasks: {stats.get('handed_off', 0)}, messages: {stats.get('sent', 0)})")
    if queued:
        print(
            f"  webhook -> job queued:   p50 {percentile(queued, 50) * 1000:7.1f} ms   "
            f"p99 {percentile(queued, 99) * 1000:7.1f} ms   max {max(queued) * 1000:7.1f} ms   (goal: within 1 s)"
        )
    if to_sent:
        print(
            f"  webhook -> followed up:  p50 {percentile(to_sent, 50) * 1000:7.1f} ms   "
            f"p99 {percentile(to_sent, 99) * 1000:7.1f} ms   max {max(to_sent) * 1000:7.1f} ms   (goal: within 5 s)"
        )
        print(f"  mean sent {statistics.mean(to_sent) * 1000:.1f} ms")
    print(
        f"  the seed's design: no fast path; a lead waits for the next monitor run, 0 to {SEED_INTERVAL} s "
        f"(mean {SEED_INTERVAL / 2:.0f} s, p99 {SEED_INTERVAL * 0.99:.0f} s), then the send"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--leads", type=int, default=300)
    parser.add_argument("--rate", type=float, default=25.0, help="leads made urgent per second")
    parser.add_argument("--workers", type=int, default=4, help="concurrent webhook clients")
    args = parser.parse_args()
    run(args.leads, args.rate, args.workers)


if __name__ == "__main__":
    main()
