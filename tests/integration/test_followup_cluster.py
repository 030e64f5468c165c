"""The follow-up loop in cluster mode (ElastiCache Serverless): the monitor's pipelined claims and
the send function's reservation, idempotency and history, on the tests' own 6-node Redis cluster."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from leadflow import redis_client
from tests.conftest import Queues
from tests.helpers import HOT, URGENT, load_app, load_event, seed_lead, sqs_event, zone_at

LEADS = [f"lead-{i}" for i in range(12)]  # twelve leads, twelve slots


@pytest.fixture
def cluster(cluster_url: str, queues: Queues) -> Iterator[str]:
    yield cluster_url
    redis_client.cache().close()


def test_the_monitor_queues_each_lead_once_across_slots(cluster: str, queues: Queues, lambda_context: Any) -> None:
    for lead_id in LEADS:
        seed_lead(lead_id, URGENT, profile={"timezone": zone_at(12)})
    monitor = load_app("monitor")
    first = monitor.lambda_handler(load_event("eventbridge_schedule"), lambda_context)
    second = monitor.lambda_handler(load_event("eventbridge_schedule"), lambda_context)
    assert first["queued"] == len(LEADS)
    assert second["queued"] == 0
    assert sorted(job["lead_id"] for job in queues.jobs()) == sorted(LEADS)


def test_the_send_function_sends_once_and_holds_the_cap(cluster: str, lambda_context: Any) -> None:
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


def cluster_job(job_id: str = "job-1") -> str:
    return json.dumps(
        {"job_id": job_id, "lead_id": "lead-0", "location_id": "loc-1", "channel": "sms", "source": "monitor",
         "intent_level": "hot", "likelihood_score": 70.0, "top_signals": ["pricing_tool_usage"]}
    )  # fmt: skip


def test_a_stop_while_composing_gives_the_cap_back_in_cluster_mode(
    cluster: str, monkeypatch: pytest.MonkeyPatch, lambda_context: Any
) -> None:
    import time

    from leadflow import sending
    from leadflow.followup_store import FollowupStore
    from leadflow.lead_state import LeadStore, encode_profile

    seed_lead("lead-0", HOT, profile={"timezone": zone_at(12), "first_name": "Ana"})
    compose = sending.compose

    def compose_while_a_stop_arrives(*args: Any) -> Any:
        LeadStore().record("loc-1", "lead-0", fields=encode_profile({"opted_out": True}))
        return compose(*args)

    monkeypatch.setattr(sending, "compose", compose_while_a_stop_arrives)
    send = load_app("send")
    assert send.lambda_handler(sqs_event([cluster_job()]), lambda_context) == {"batchItemFailures": []}
    store = FollowupStore()
    assert store.outbox("loc-1") == []
    assert store.history("loc-1", "lead-0")[0]["reason"] == "opted_out"
    assert store.followups("loc-1", {"lead-0": 0.0}, time.time())["lead-0"].counts.today == 0


def test_a_job_interrupted_while_sending_is_never_sent_again_in_cluster_mode(cluster: str, lambda_context: Any) -> None:
    from leadflow.followup_store import FollowupStore

    seed_lead("lead-0", HOT, profile={"timezone": zone_at(12), "first_name": "Ana"})
    store = FollowupStore()
    assert store.reserve("loc-1", "lead-0", "job-1", 1.0e9, 0.0, 3, 0) == "reserved"
    assert store.begin_send("loc-1", "lead-0", "job-1", "attempt-1")
    send = load_app("send")  # a new delivery, after the first died mid-request
    assert send.lambda_handler(sqs_event([cluster_job()], 2), lambda_context) == {"batchItemFailures": []}
    assert store.outbox("loc-1") == []
    assert [(e["status"], e["reason"]) for e in store.history("loc-1", "lead-0")] == [("failed", "outcome_unknown")]


def test_claims_deliveries_and_the_index_sweep_work_across_slots(cluster: str) -> None:
    import time

    import redis

    from leadflow.followup_store import FollowupStore
    from leadflow.lead_state import LeadStore, expiry_key, index_key

    leads, store = LeadStore(), FollowupStore()
    claims = store.claim("loc-1", [(lead, f"job-{lead}") for lead in LEADS])
    assert set(claims.values()) == {"ok"}
    assert set(store.claim("loc-1", [(lead, f"job2-{lead}") for lead in LEADS]).values()) == {"pending"}
    assert leads.claim_delivery("wh:msg-1", "loc-a")
    assert not leads.claim_delivery("wh:msg-1", "loc-b")
    for lead in LEADS:
        seed_lead(lead, {"website_visit": 1})
    raw = redis.RedisCluster.from_url(cluster)
    raw.zadd(expiry_key("loc-1"), {lead: time.time() - 1 for lead in LEADS[:5]})
    assert leads.sweep_expired("loc-1", time.time()) == 5
    assert raw.zcard(index_key("loc-1")) == len(LEADS) - 5
