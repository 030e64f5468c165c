"""Webhook intake against a bare loop of the record script, on the same redis-server in the same run.

- single: the webhook function's handler (`functions/webhook/app.py`, every decorator on), one signed
  activity event per request, over LEADS leads; against the bare loop: one EVALSHA of the record
  script per event, nothing else. Goal: ratio (handler events/s over bare events/s) >= 0.5.
- batch: one request of 100 activity events (100 leads), time per event; goal <= 0.5x the bare loop's.
- round trips: what one request sends to Redis (a pipeline is one), for one event and for a batch.

Signing happens before the clock starts; the handler's log and metric lines go to /dev/null (Lambda
writes them to stdout too, so their cost is counted). Its own redis-server on a free port. SQS (the
write-back jobs queued when a lead's score moves) is a stand-in that answers at once: Redis and the
handler's own work are measured, not SQS.

    .venv/bin/python bench/intake.py [--events 3000]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "layers" / "common"), str(ROOT / "bench")]

from redis_batch import redis_server  # noqa: E402

SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SIGNALS = ["pricing_tool_usage", "neighborhood_research", "market_report_engagement", "listing_view"]
LEADS = 1000
BATCH = 100


class InstantSqs:
    def __init__(self) -> None:
        self.messages = 0

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        self.messages += len(Entries)
        return {"Successful": [{"Id": entry["Id"]} for entry in Entries], "Failed": []}


class Context:
    function_name = "bench-webhook"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:us-east-1:000000000000:function:bench-webhook"
    aws_request_id = "bench"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def load_webhook() -> Any:
    spec = importlib.util.spec_from_file_location("webhook_app", ROOT / "functions" / "webhook" / "app.py")
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["webhook_app"] = module
    spec.loader.exec_module(module)
    return module


def function_url(body: dict[str, Any]) -> dict[str, Any]:
    from leadflow.cli import sign_activity

    raw = json.dumps(body).encode()
    return {
        "version": "2.0",
        "rawPath": "/webhooks/activity",
        "headers": sign_activity(raw, SECRET),
        "requestContext": {"http": {"method": "POST", "path": "/webhooks/activity"}},
        "body": raw.decode(),
        "isBase64Encoded": False,
    }


def event(i: int) -> dict[str, Any]:
    from leadflow.cli import activity_event

    return activity_event("loc-bench", f"c-{i % LEADS}", SIGNALS[i % len(SIGNALS)])


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """stdout to /dev/null at the file-descriptor level: Powertools writes there."""
    sys.stdout.flush()
    saved = os.dup(1)
    with open(os.devnull, "w") as sink:
        os.dup2(sink.fileno(), 1)
        try:
            yield
        finally:
            sys.stdout.flush()
            os.dup2(saved, 1)
            os.close(saved)


@contextlib.contextmanager
def round_trips() -> Iterator[list[int]]:
    """Counts what is written to Redis as one send (a command, or a whole pipeline)."""
    from redis.connection import AbstractConnection

    counter = [0]
    original = AbstractConnection.send_packed_command

    def counted(self: Any, command: Any, check_health: bool = True) -> None:
        counter[0] += 1
        original(self, command, check_health)

    AbstractConnection.send_packed_command = counted  # type: ignore[method-assign]
    try:
        yield counter
    finally:
        AbstractConnection.send_packed_command = original  # type: ignore[method-assign]


def per_event(run: Callable[[], None], events: int, repeats: int = 5) -> float:
    """Median over `repeats` of the seconds per event."""
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        timings.append((time.perf_counter() - started) / events)
    return statistics.median(timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=3000)
    args = parser.parse_args()
    n = args.events
    with redis_server() as url:
        os.environ |= {
            "REDIS_URL": url,
            "WEBHOOK_SIGNING_SECRET": SECRET,
            "GHL_LOCATION_ID": "loc-bench",
            "POWERTOOLS_TRACE_DISABLED": "true",
            "POWERTOOLS_SERVICE_NAME": "leadflow",
            "AWS_DEFAULT_REGION": "us-east-1",
            "FOLLOWUP_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/000000000000/bench-followups",
        }
        for key in ("GHL_API_KEY", "ANTHROPIC_API_KEY", "REDIS_CLUSTER"):
            os.environ.pop(key, None)
        app = load_webhook()
        from leadflow import jobs, writeback

        sqs = InstantSqs()
        writeback._sqs = jobs.sqs = lambda: sqs  # type: ignore[assignment]
        from leadflow import lead_state
        from leadflow.cli import activity_event
        from leadflow.intake.service import store
        from leadflow.scoring import intent_level, likelihood

        context = Context()
        singles = [[function_url(event(r * n + i)) for i in range(n)] for r in range(5)]
        batches = [
            [function_url({"events": [event(r * 10_000 + b * BATCH + i) for i in range(BATCH)]}) for b in range(10)]
            for r in range(5)
        ]

        def handler(requests: list[dict[str, Any]]) -> Callable[[], None]:
            def run() -> None:
                for request in requests:
                    reply = app.lambda_handler(request, context)
                    assert reply["statusCode"] == 200, reply

            return run

        leads = store()
        redis_client = leads.cache.client
        script = redis_client.register_script(lead_state._RECORD)
        bare_keys = [f"lf:{{loc-bare:c-{i % LEADS}}}" for i in range(n)]

        def bare() -> None:
            for i, prefix in enumerate(bare_keys):
                at = time.time()
                keys = [prefix + ":lead", prefix + ":synced", prefix + ":sync-queued"]
                keys.append(f"{prefix}:seen:{uuid.uuid4().hex}")
                args = [SIGNALS[i % 4], repr(at), "1e-5", "1e-6", int(at // 3600) % 24, 604800, 7776000, "t", "1"]
                args += [repr(at), repr(at + 7776000), "c", "loc-bare"]  # now, when it ends, its ids
                script(keys=keys, args=args, client=redis_client)

        with quiet():
            # Warm up (connections, the script cache, imports on first use) with an event for every
            # lead, then mark each lead written back to GHL as it stands, as the send function's sync
            # job would have: the runs measure leads already known, not a first write-back per event.
            handler([function_url(event(i)) for i in range(LEADS)])()
            synced = leads.load_many("loc-bench", [f"c-{i}" for i in range(LEADS)])
            pipe = redis_client.pipeline(transaction=False)
            for cid, state in synced.items():
                score = likelihood(state, time.time())
                pipe.hset(f"lf:{{loc-bench:{cid}}}:synced", mapping={"score": score, "intent": intent_level(score)})
            pipe.execute()
            with round_trips() as one:  # a known lead's event that moves its score a little
                handler([function_url(activity_event("loc-bench", "c-7", "listing_view"))])()
            with round_trips() as hundred:
                handler([function_url({"events": [event(i) for i in range(BATCH)]})])()
            with round_trips() as first:  # a new lead: its first write-back falls due too
                handler([function_url(activity_event("loc-bench", "c-new", "pricing_tool_usage"))])()
            bare()
            runs, batch_runs = iter(singles), iter(batches)
            single = per_event(lambda: handler(next(runs))(), n)  # noqa: PLW0108 (a fresh list per run)
            batch = per_event(lambda: handler(next(batch_runs))(), BATCH * 10)  # noqa: PLW0108
            baseline = per_event(bare, n)

    print(f"intake: {n} single-event requests and 10 x {BATCH}-event batches, medians of 5 runs")
    print(f"  bare loop (one record script per event): {1 / baseline:8,.0f} events/s  {baseline * 1e6:6.0f} us/event")
    print(
        f"  handler, one event per request:          {1 / single:8,.0f} events/s  {single * 1e6:6.0f} us/event"
        f"  ratio {baseline / single:.2f} (goal >= 0.5)"
    )
    print(
        f"  handler, {BATCH} events per request:       {1 / batch:8,.0f} events/s  {batch * 1e6:6.0f} us/event"
        f"  {batch / baseline:.2f}x the bare loop's time per event (goal <= 0.5x)"
    )
    print(
        f"  Redis round trips: {one[0]} for one event (goal 1), {hundred[0]} for a batch of {BATCH} events of known"
        f" leads; {first[0]} for a new lead's first event (its write-back falls due)"
    )
    print(f"  (write-back jobs queued on the SQS stand-in: {sqs.messages})")


if __name__ == "__main__":
    main()
