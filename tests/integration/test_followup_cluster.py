"""The follow-up loop in cluster mode (ElastiCache Serverless): the monitor's pipelined claims and
the send function's reservation, idempotency and history, on a single-node Redis cluster."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from leadflow import config, redis_client
from tests.conftest import Queues
from tests.helpers import HOT, URGENT, load_app, load_event, seed_lead, sqs_event, zone_at
from tests.integration.test_lead_state import cluster_node

__all__ = ["cluster_node"]  # the module-scoped fixture, shared with the lead state tests

LEADS = [f"lead-{i}" for i in range(12)]  # twelve leads, twelve slots


@pytest.fixture
def cluster(cluster_node: int, queues: Queues, monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    redis.Redis(port=cluster_node).flushall()
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{cluster_node}/0")
    monkeypatch.setenv("REDIS_CLUSTER", "true")
    config.settings.cache_clear()
    redis_client.cache.cache_clear()
    yield cluster_node
    redis_client.cache().close()


def test_the_monitor_queues_each_lead_once_across_slots(cluster: int, queues: Queues, lambda_context: Any) -> None:
    for lead_id in LEADS:
        seed_lead(lead_id, URGENT, profile={"timezone": zone_at(12)})
    monitor = load_app("monitor")
    first = monitor.lambda_handler(load_event("eventbridge_schedule"), lambda_context)
    second = monitor.lambda_handler(load_event("eventbridge_schedule"), lambda_context)
    assert first["queued"] == len(LEADS)
    assert second["queued"] == 0
    assert sorted(json.loads(m["Body"])["lead_id"] for m in queues.receive(queues.followup)) == sorted(LEADS)


def test_the_send_function_sends_once_and_holds_the_cap(cluster: int, lambda_context: Any) -> None:
    from leadflow.followup_store import FollowupStore

    seed_lead("lead-0", HOT, profile={"timezone": zone_at(12), "first_name": "Ana"})
    send = load_app("send")
    job = {
        "lead_id": "lead-0", "location_id": "loc-1", "channel": "sms", "source": "monitor",
        "intent_level": "hot", "likelihood_score": 70.0, "top_signals": ["pricing_tool_usage"],
    }  # fmt: skip
    bodies = [json.dumps(job | {"job_id": f"job-{i}"}) for i in range(4)]
    assert send.lambda_handler(sqs_event(bodies), lambda_context) == {"batchItemFailures": []}
    assert send.lambda_handler(sqs_event(bodies[:1], 2), lambda_context) == {"batchItemFailures": []}
    store = FollowupStore()
    assert len(store.outbox("loc-1")) == 3
    assert [entry["status"] for entry in store.history("loc-1", "lead-0")] == ["skipped", "sent", "sent", "sent"]
