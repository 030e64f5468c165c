"""The monitor's fan-out against a real redis-server and moto SQS: a small run in one invocation; a
big one planned into shards on the shard queue, which the monitor consumes, each shard once."""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.conftest import Queues, _clear_caches
from tests.helpers import HOT, URGENT, load_app, load_event, raw_redis, seed_lead, zone_at

URGENT_SMS = {signal: n for signal, n in URGENT.items() if signal != "agent_inquiry"}
SCHEDULED = "2026-11-25T17:05:00Z"  # tests/events/eventbridge_schedule.json
RUN = "20261125T170500Z"


@pytest.fixture
def shard_queue(queues: Queues, monkeypatch: pytest.MonkeyPatch) -> str:
    """The template's shard queue in moto, set as MONITOR_SHARD_QUEUE_URL; shards of 3 candidates."""
    url = queues.client.create_queue(QueueName="leadflow-monitor-shards")["QueueUrl"]
    monkeypatch.setenv("MONITOR_SHARD_QUEUE_URL", url)
    monkeypatch.setenv("MONITOR_SHARD_LEADS", "3")
    _clear_caches()
    return url


@pytest.fixture
def monitor(redis_url: str, shard_queue: str) -> Any:
    return load_app("monitor")


def sqs_event(messages: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "0"},
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:leadflow-monitor-shards",
                "awsRegion": "us-east-1",
            }
            for m in messages
        ]
    }


def shard_messages(queues: Queues, url: str) -> list[dict[str, Any]]:
    """Every shard message on the queue now, taken off it (Lambda's poller deletes what it delivers)."""
    messages = queues.receive(url)
    for m in messages:
        queues.client.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    return messages


def deliver(monitor: Any, messages: list[dict[str, Any]], context: Any) -> list[dict[str, Any]]:
    """Each message to the handler as Lambda's SQS poller does with BatchSize 1; the replies."""
    return [monitor.lambda_handler(sqs_event([m]), context) for m in messages]


def job_ids(queues: Queues) -> list[str]:
    return [job["job_id"] for job in queues.jobs()]


def seed_three_locations(now: float | None = None) -> dict[str, list[str]]:
    """loc-a: 7 leads (over a shard of 3: split in three), loc-b: 2 and loc-c: 1 (packed into one shard)."""
    leads = {"loc-a": [f"a{i}" for i in range(7)], "loc-b": ["b0", "b1"], "loc-c": ["c0"]}
    for location_id, ids in leads.items():
        for cid in ids:
            seed_lead(cid, URGENT_SMS, location_id=location_id, profile={"timezone": zone_at(12, now)}, now=now)
    return leads


def test_a_run_within_one_shard_is_done_by_the_scheduled_invocation_alone(
    monitor: Any, queues: Queues, shard_queue: str, lambda_context: Any
) -> None:
    for cid in ("a", "b", "c"):
        seed_lead(cid, URGENT_SMS, profile={"timezone": zone_at(12)})

    report = monitor.lambda_handler(load_event("eventbridge_schedule"), lambda_context)

    assert (report["shards"], report["run"], report["candidates"], report["queued"]) == (0, None, 3, 3)
    assert queues.receive(shard_queue) == []
    assert sorted(job["lead_id"] for job in queues.jobs()) == ["a", "b", "c"]


def test_a_big_run_is_fanned_out_and_every_shard_is_done_once(
    monitor: Any, queues: Queues, shard_queue: str, lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from leadflow import lead_state, monitor_shards
    from leadflow.redis_client import cache

    monkeypatch.setattr(lead_state, "CANDIDATE_PAGE", 2)  # pages within shards, too
    monkeypatch.setattr(monitor_shards, "CANDIDATE_PAGE", 2)
    leads = seed_three_locations()

    # When the schedule fires, Then the run is planned: shards queued, no job yet
    report = monitor.lambda_handler(load_event("eventbridge_schedule"), lambda_context)
    assert (report["run"], report["shards"], report["candidates"], report["queued"]) == (RUN, 4, 10, 0)
    assert queues.jobs() == []
    messages = shard_messages(queues, shard_queue)
    shards = [monitor_shards.Shard.from_json(m["Body"]) for m in messages]
    assert sorted(s.index for s in shards) == [0, 1, 2, 3]
    assert {s.parts for s in shards} == {
        (monitor_shards.Part("loc-a", 0, 3, 0, 3),),
        (monitor_shards.Part("loc-a", 3, 6, 1, 3),),
        (monitor_shards.Part("loc-a", 6, None, 2, 3),),
        (monitor_shards.Part("loc-b"), monitor_shards.Part("loc-c")),
    }

    # When the monitor consumes them, Then every lead gets exactly one job, and no shard failed
    replies = deliver(monitor, messages, lambda_context)
    assert replies == [{"batchItemFailures": []}] * 4
    jobs = queues.jobs()
    assert sorted(job["lead_id"] for job in jobs) == sorted(cid for ids in leads.values() for cid in ids)
    assert Counter(job["location_id"] for job in jobs) == {"loc-a": 7, "loc-b": 2, "loc-c": 1}
    assert {job["source"] for job in jobs} == {"monitor"}
    # each shard is marked done; the split location's snapshot is gone with its last piece
    client = cache().client
    assert [client.get(f"lf:{{monitor:{RUN}}}:shard:{i}") for i in range(4)] == ["done"] * 4
    assert client.exists(monitor_shards.snapshot_key("loc-a", RUN)) == 0


def test_a_redelivered_shard_does_nothing(monitor: Any, queues: Queues, shard_queue: str, lambda_context: Any) -> None:
    seed_three_locations()
    monitor.lambda_handler(load_event("eventbridge_schedule"), lambda_context)
    messages = shard_messages(queues, shard_queue)
    deliver(monitor, messages, lambda_context)
    first = sorted(job_ids(queues))

    # When SQS delivers every shard again (at least once), Then nothing more is done or queued
    replies = deliver(monitor, messages, lambda_context)

    assert replies == [{"batchItemFailures": []}] * len(messages)
    assert len(first) == 10
    assert job_ids(queues) == []  # (the first jobs were received above and are in flight)


def test_a_repeated_schedule_event_sends_the_same_plan_and_each_shard_is_done_once(
    monitor: Any, queues: Queues, shard_queue: str, lambda_context: Any
) -> None:
    seed_three_locations()
    seed_lead("late", URGENT_SMS, location_id="loc-d", profile={"timezone": zone_at(12)})

    first = monitor.lambda_handler(load_event("eventbridge_schedule"), lambda_context)
    seed_lead("later", URGENT_SMS, location_id="loc-d", profile={"timezone": zone_at(12)})  # counts change
    again = monitor.lambda_handler(load_event("eventbridge_schedule"), lambda_context)  # a retry: same time
    messages = shard_messages(queues, shard_queue)

    assert first["shards"] == again["shards"] == 5
    assert Counter(m["Body"] for m in messages) == dict.fromkeys({m["Body"] for m in messages}, 2)
    deliver(monitor, messages, lambda_context)
    jobs = Counter(job["lead_id"] for job in queues.jobs())
    assert set(jobs.values()) == {1}
    assert len(jobs) == 12  # "later" came after the plan, into loc-d's part: read from the live index


def test_a_shard_that_failed_midway_is_done_again_and_queues_each_job_once(
    monitor: Any, queues: Queues, shard_queue: str, lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from leadflow.lead_state import LeadStore

    seed_three_locations()
    monitor.lambda_handler(load_event("eventbridge_schedule"), lambda_context)
    messages = shard_messages(queues, shard_queue)
    (packed,) = [m for m in messages if "loc-b" in m["Body"]]  # loc-b then loc-c

    # Given a shard whose second location fails after the first location's jobs were queued
    real = LeadStore.load_many

    def failing(self: LeadStore, location_id: str, ids: Any) -> Any:
        if location_id == "loc-c":
            raise RuntimeError("redis went away mid-shard")
        return real(self, location_id, ids)

    monkeypatch.setattr(LeadStore, "load_many", failing)
    (top,) = [m for m in messages if json.loads(m["Body"])["parts"] == [["loc-a", 0, 3, 0, 3]]]
    batch = [packed, top, {**packed, "MessageId": "garbled", "Body": "not a shard"}]
    reply = monitor.lambda_handler(sqs_event(batch), lambda_context)
    # Then the failed shard (and the garbled message) go back to the queue; the other shard is done
    failed = sorted(f["itemIdentifier"] for f in reply["batchItemFailures"])
    assert failed == sorted(["garbled", packed["MessageId"]])
    assert Counter(job["location_id"] for job in queues.jobs()) == {"loc-b": 2, "loc-a": 3}

    # When SQS delivers it again (its claim was given back), Then it is done: loc-c's lead is queued,
    # loc-b's leads, whose jobs are in flight, are not queued twice
    monkeypatch.setattr(LeadStore, "load_many", real)
    assert deliver(monitor, [packed], lambda_context) == [{"batchItemFailures": []}]
    assert [job["lead_id"] for job in queues.jobs()] == ["c0"]


def test_a_shard_whose_invocation_died_comes_back_until_its_lease_ends(
    monitor: Any, queues: Queues, shard_queue: str, lambda_context: Any
) -> None:
    from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

    from leadflow import monitor_shards
    from leadflow.redis_client import cache

    seed_three_locations()
    monitor.lambda_handler(load_event("eventbridge_schedule"), lambda_context)
    messages = shard_messages(queues, shard_queue)
    (packed,) = [m for m in messages if "loc-b" in m["Body"]]
    # Given an invocation that took the shard with a 0.3 s lease and died
    monitor_shards.claim(cache(), monitor_shards.Shard.from_json(packed["Body"]), 0.3)

    # When SQS delivers it while the lease holds, Then it goes back to the queue (the whole batch failed)
    with pytest.raises(BatchProcessingError):
        monitor.lambda_handler(sqs_event([packed]), lambda_context)
    assert queues.jobs() == []

    # When it comes again after the lease, Then it is done
    time.sleep(0.4)
    assert deliver(monitor, [packed], lambda_context) == [{"batchItemFailures": []}]
    assert sorted(job["lead_id"] for job in queues.jobs()) == ["b0", "b1", "c0"]


def test_a_shard_while_monitoring_is_off_or_spilled_events_wait_queues_nothing(
    monitor: Any, queues: Queues, shard_queue: str, lambda_context: Any
) -> None:
    from leadflow.followup_store import FollowupStore

    seed_three_locations()
    monitor.lambda_handler(load_event("eventbridge_schedule"), lambda_context)
    messages = shard_messages(queues, shard_queue)
    shards = {json.loads(m["Body"])["shard"]: m for m in messages}

    FollowupStore().set_monitoring(False)
    assert deliver(monitor, [shards[0]], lambda_context) == [{"batchItemFailures": []}]
    FollowupStore().set_monitoring(True)
    queues.client.send_message(QueueUrl=queues.intake, MessageBody="{}")  # a spilled event waits
    _clear_caches()  # the depth the planner read is kept 10 s per process (jobs.REPLAY_CHECK_SECONDS)
    assert deliver(monitor, [shards[1]], lambda_context) == [{"batchItemFailures": []}]

    assert queues.jobs() == []


def test_a_switched_off_monitor_plans_nothing(
    monitor: Any, queues: Queues, shard_queue: str, lambda_context: Any
) -> None:
    from leadflow.followup_store import FollowupStore

    seed_three_locations()
    FollowupStore().set_monitoring(False)

    report = monitor.lambda_handler(load_event("eventbridge_schedule"), lambda_context)

    assert (report["enabled"], report["shards"]) == (False, 0)
    assert queues.receive(shard_queue) == []


def test_the_sharded_run_queues_the_same_jobs_as_one_invocation_on_the_same_data(
    redis_url: str, queues: Queues, shard_queue: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from leadflow import monitor_shards
    from leadflow.followup import run_monitor, run_shard

    now = float(int(time.time()))
    at = datetime.fromtimestamp(now, UTC)

    def seed() -> None:
        # urgent and hot leads, in and out of their hours, opted out, in three locations of unequal size
        for i in range(8):
            seed_lead(f"u{i}", URGENT_SMS, location_id="big", profile={"timezone": zone_at(12, now)}, now=now)
        for i in range(4):
            seed_lead(f"h{i}", HOT, location_id="big", profile={"timezone": zone_at(12, now)}, now=now)
        seed_lead("night", URGENT_SMS, location_id="big", profile={"timezone": zone_at(3, now)}, now=now)
        seed_lead("dnd", URGENT_SMS, location_id="mid", profile={"timezone": zone_at(12, now), "dnd": True}, now=now)
        for i in range(3):
            seed_lead(f"m{i}", HOT, location_id="mid", profile={"timezone": zone_at(15, now)}, now=now)
        seed_lead("s0", URGENT, location_id="small", profile={"timezone": zone_at(12, now)}, now=now)

    def queued() -> set[str]:
        jobs = queues.jobs()
        assert len(jobs) == len({job["job_id"] for job in jobs})
        return {json.dumps({k: v for k, v in job.items() if k != "created_at"}, sort_keys=True) for job in jobs}

    # Given the leads, When one invocation does the run
    seed()
    monkeypatch.setenv("MONITOR_SHARD_LEADS", "1000")
    _clear_caches()
    whole = run_monitor(now=at, scheduled=SCHEDULED)
    assert whole.shards == 0
    expected = queued()

    # Given the same leads again, When the run is fanned out in shards of 4 and each shard is done
    raw_redis(redis_url).flushdb()  # every master, in cluster mode
    seed()
    monkeypatch.setenv("MONITOR_SHARD_LEADS", "4")
    _clear_caches()
    planned = run_monitor(now=at, scheduled=SCHEDULED)
    reports = [
        run_shard(monitor_shards.Shard.from_json(m["Body"]), 60, now=at) for m in shard_messages(queues, shard_queue)
    ]

    # Then the same jobs are queued, with the same ids, channels and scores, and the same leads skipped why
    assert planned.shards == len(reports) == 6  # big: 13 candidates in 4 pieces; mid 4 -> 1; small 1 -> 1
    assert queued() == expected
    assert len(expected) == whole.queued == sum(r.queued for r in reports) >= 10
    assert whole.candidates == planned.candidates == sum(r.candidates for r in reports)
    skipped: Counter[str] = Counter()
    for r in reports:
        skipped.update(r.skipped)
    assert dict(skipped) == whole.skipped
    assert {"opted_out", "quiet_hours"} <= set(skipped)


def test_a_fanned_out_run_in_cluster_mode_does_every_lead_once(
    cluster_url: str, queues: Queues, shard_queue: str, lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from leadflow import monitor_shards
    from leadflow.redis_client import cache

    # Given the tests' Redis cluster (ElastiCache Serverless runs in cluster mode): keys in many slots
    try:
        leads = seed_three_locations()
        monitor = load_app("monitor")

        report = monitor.lambda_handler(load_event("eventbridge_schedule"), lambda_context)
        replies = deliver(monitor, shard_messages(queues, shard_queue), lambda_context)

        assert report["shards"] == 4
        assert replies == [{"batchItemFailures": []}] * 4
        assert sorted(job["lead_id"] for job in queues.jobs()) == sorted(c for ids in leads.values() for c in ids)
        assert cache().run(lambda r: r.exists(monitor_shards.snapshot_key("loc-a", RUN))) == 0
    finally:
        cache().close()
