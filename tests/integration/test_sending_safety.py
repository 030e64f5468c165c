"""Sending safety under faults (the contract's "what must never happen"), through the send handler's
real SQS events: a GHL that takes the request and never answers, or answers too late; Redis paused
right after GHL accepted; a STOP arriving while Claude writes the message."""

from __future__ import annotations

import contextlib
import time
from typing import Any

import httpx
import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

from leadflow.config import settings
from tests.helpers import CLOSE, HOT, StubServer, free_port, pause_clients, raw_redis, seed_lead
from tests.integration.test_send_function import NOON, deliver, history, job, outbox

POST = "POST /conversations/messages"


@pytest.fixture
def short_ghl_timeouts(monkeypatch: pytest.MonkeyPatch) -> None:
    from leadflow.ghl import client

    monkeypatch.setattr(client, "TIMEOUT", httpx.Timeout(0.5, connect=0.5))
    client.http.cache_clear()


def sends_today(lead_id: str = "hot-1") -> int:
    from leadflow.followup_store import FollowupStore

    return FollowupStore().followups("loc-1", {lead_id: 0.0}, time.time())[lead_id].counts.today


def new_instance() -> None:
    """What a new Lambda instance has: fresh clients (and so a closed circuit breaker)."""
    from leadflow import redis_client

    redis_client.cache.cache_clear()


def test_a_request_ghl_took_without_answering_is_sent_once_ever(
    send: Any, ghl: StubServer, lambda_context: Any
) -> None:
    # Given a GHL that reads the request and closes the connection (it may have sent the SMS)
    ghl.replies[POST] = [(CLOSE, {}, None)]
    seed_lead("hot-1", HOT, profile=NOON)
    # When SQS delivers the job as often as its redrive policy allows, and a send is forced once more
    for receive_count in range(1, 6):
        assert deliver(send, lambda_context, job(), receive_count=receive_count) == {"batchItemFailures": []}
    from leadflow.jobs import Job
    from leadflow.sending import process_job

    process_job(Job.from_json(job()), attempt=5)
    # Then GHL saw one request, the history says why nothing more, and the send counts under the cap
    assert len(ghl.calls(POST)) == 1
    [entry] = history()
    assert (entry["status"], entry["reason"]) == ("failed", "outcome_unknown")
    assert sends_today() == 1


def test_a_reply_later_than_the_read_timeout_is_outcome_unknown(
    send: Any, ghl: StubServer, short_ghl_timeouts: None, lambda_context: Any
) -> None:
    ghl.replies[POST] = [(200, {"X-Stub-Delay": "1.5"}, {"messageId": "m-late"})]
    seed_lead("hot-1", HOT, profile=NOON)
    assert deliver(send, lambda_context, job()) == {"batchItemFailures": []}
    assert deliver(send, lambda_context, job(), receive_count=2) == {"batchItemFailures": []}
    assert len(ghl.calls(POST)) == 1
    assert [(e["status"], e["reason"]) for e in history()] == [("failed", "outcome_unknown")]
    assert sends_today() == 1


def test_a_request_that_never_reached_ghl_is_retried_and_gives_its_place_back(
    send: Any, ghl: StubServer, short_ghl_timeouts: None, monkeypatch: pytest.MonkeyPatch, lambda_context: Any
) -> None:
    # Given nothing listening where GHL should be: a connect error, certainly not sent
    monkeypatch.setenv("GHL_API_BASE_URL", f"http://127.0.0.1:{free_port()}")
    settings.cache_clear()
    seed_lead("hot-1", HOT, profile=NOON)
    with pytest.raises(BatchProcessingError):  # handed back to SQS
        deliver(send, lambda_context, job())
    assert history() == []
    assert sends_today() == 0
    # And once GHL is back, the redelivery sends
    monkeypatch.setenv("GHL_API_BASE_URL", ghl.url)
    settings.cache_clear()
    assert deliver(send, lambda_context, job(), receive_count=2) == {"batchItemFailures": []}
    assert len(ghl.calls(POST)) == 1
    assert history()[0]["status"] == "sent"


def test_redis_failing_right_after_ghl_accepted_never_sends_again(
    send: Any, ghl: StubServer, redis_url: str, lambda_context: Any
) -> None:
    # Given a GHL that accepts the message while Redis stops answering for 1.5 s
    admin = raw_redis(redis_url)
    ghl.on_request = lambda request: pause_clients(admin, 1500)
    seed_lead("hot-1", HOT, profile=NOON)
    # When the job is delivered, and delivered again once Redis is back (to a new instance)
    with contextlib.suppress(BatchProcessingError):  # reported failed or not: both are fine
        deliver(send, lambda_context, job())
    time.sleep(1.6)
    ghl.on_request = None
    new_instance()
    deliver(send, lambda_context, job(), receive_count=2)
    # Then GHL saw one request, and the history never says sent twice
    assert len(ghl.calls(POST)) == 1
    assert [e["status"] for e in history()].count("sent") <= 1
    assert sends_today() == 1


def test_a_stop_that_arrives_while_claude_writes_stops_the_message(
    send: Any, ghl: StubServer, anthropic_api: StubServer, lambda_context: Any
) -> None:
    from leadflow.lead_state import LeadStore, encode_profile

    # Given a lead who replies STOP while Claude is writing to them
    seed_lead("hot-1", HOT, profile=NOON)
    stop = encode_profile({"opted_out": True})
    anthropic_api.on_request = lambda request: LeadStore().record("loc-1", "hot-1", fields=stop)
    # When the job is sent
    assert deliver(send, lambda_context, job()) == {"batchItemFailures": []}
    # Then Claude was asked, GHL was not, and the cap's place is given back
    assert len(anthropic_api.calls("POST /v1/messages")) == 1
    assert ghl.calls(POST) == []
    [entry] = history()
    assert (entry["status"], entry["reason"]) == ("skipped", "opted_out")
    assert sends_today() == 0


def test_a_stop_during_composing_stops_a_dry_run_message_too(
    send: Any, anthropic_api: StubServer, lambda_context: Any
) -> None:
    from leadflow.lead_state import LeadStore, encode_profile

    seed_lead("hot-1", HOT, profile=NOON)
    stop = encode_profile({"opted_out": True})
    anthropic_api.on_request = lambda request: LeadStore().record("loc-1", "hot-1", fields=stop)
    deliver(send, lambda_context, job())
    assert outbox() == []
    assert history()[0]["reason"] == "opted_out"


def test_a_job_is_not_started_with_less_time_left_than_its_longest_path(send: Any, lambda_context: Any) -> None:
    from dataclasses import replace

    from leadflow.sending import LONGEST_JOB_SECONDS

    # Given an invocation with just under one job's longest path left
    seed_lead("hot-1", HOT, profile=NOON)
    short = replace(lambda_context)
    short.get_remaining_time_in_millis = lambda: int(LONGEST_JOB_SECONDS * 1000) - 1  # type: ignore[method-assign]
    # When jobs arrive, they go back to the queue untouched (a batch that failed whole is raised)
    with pytest.raises(BatchProcessingError, match="All records failed"):
        deliver(send, short, job(), job(job_id="job-2"))
    assert (outbox(), history(), sends_today()) == ([], [], 0)
    # And a fresh invocation sends it
    assert deliver(send, lambda_context, job(), receive_count=2) == {"batchItemFailures": []}
    assert len(outbox()) == 1


# Nothing is sent past spilled events


def test_nothing_automated_is_sent_while_spilled_events_wait_for_replay(
    send: Any, queues: Any, lambda_context: Any
) -> None:
    from leadflow import jobs
    from tests.helpers import URGENT, load_app, load_event, zone_at

    # Given an urgent lead, and a spilled event (perhaps its STOP) waiting on the intake queue
    seed_lead("hot-1", URGENT, profile=NOON | {"timezone": zone_at(12)})
    queues.client.send_message(QueueUrl=queues.intake, MessageBody="{}")
    # When the monitor runs and a job arrives
    monitor = load_app("monitor")
    report = monitor.lambda_handler(load_event("eventbridge_schedule"), lambda_context)
    assert deliver(send, lambda_context, job()) == {"batchItemFailures": []}
    # Then nothing is queued or sent, and the history says why
    assert (report["held_for_replay"], report["queued"]) == (True, 0)
    assert outbox() == []
    assert [(e["status"], e["reason"]) for e in history()] == [("skipped", "replay_pending")]
    # And once the replay has emptied the queue, the monitor queues again
    [message] = queues.receive(queues.intake)
    queues.client.delete_message(QueueUrl=queues.intake, ReceiptHandle=message["ReceiptHandle"])
    jobs._replay_seen.clear()
    assert monitor.lambda_handler(load_event("eventbridge_schedule"), lambda_context)["queued"] == 1


# No contact data without an end


def test_the_message_history_ends_with_the_lead(send: Any, redis_url: str, lambda_context: Any) -> None:
    from leadflow.lead_state import lead_prefix

    seed_lead("hot-1", HOT, profile=NOON)
    deliver(send, lambda_context, job())
    ttl = raw_redis(redis_url).ttl(lead_prefix("loc-1", "hot-1") + ":messages")
    assert 179 * 86_400 < ttl <= 180 * 86_400  # LEAD_TTL_DAYS' default


def test_index_entries_of_leads_whose_data_ended_are_swept_by_the_monitor(
    send: Any, redis_url: str, lambda_context: Any
) -> None:
    from leadflow.lead_state import expiry_key, index_key
    from tests.helpers import load_app, load_event

    raw = raw_redis(redis_url)
    seed_lead("gone-1", {"website_visit": 1}, profile=NOON)  # cold: the monitor never reads it as a candidate
    seed_lead("kept-1", {"website_visit": 1}, profile=NOON)
    assert raw.ttl("lf:{loc-1:gone-1}:lead") > 179 * 86_400
    # Given a lead whose data has ended (its hash expired; its index entry would stay for good)
    raw.delete("lf:{loc-1:gone-1}:lead")
    raw.zadd(expiry_key("loc-1"), {"gone-1": time.time() - 1})
    # When the monitor runs
    report = load_app("monitor").lambda_handler(load_event("eventbridge_schedule"), lambda_context)
    # Then its index entry is gone, and the other lead's is kept
    assert report["expired"] == 1
    assert raw.zscore(index_key("loc-1"), "gone-1") is None
    assert raw.zscore(index_key("loc-1"), "kept-1") is not None
