"""The send function: jobs from SQS (guardrails at send time, exactly once, dry-run and live
delivery against a local GHL stand-in, Claude against a local Anthropic stand-in) and its HTTP routes."""

from __future__ import annotations

import json
import multiprocessing
import time
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

from leadflow.config import settings
from tests.conftest import Queues
from tests.helpers import HOT, URGENT, StubServer, http_event, seed_lead, sqs_event, zone_at

NOON = {"timezone": zone_at(12), "first_name": "Ana"}


def job(lead_id: str = "hot-1", job_id: str = "job-1", **fields: Any) -> str:
    body = {
        "job_id": job_id, "lead_id": lead_id, "location_id": "loc-1", "channel": "sms", "source": "monitor",
        "intent_level": "hot", "likelihood_score": 70.7, "top_signals": ["pricing_tool_usage"],
        "created_at": "2026-11-25T17:05:00Z", "triggered_at": time.time() - 30,
    }  # fmt: skip
    return json.dumps(body | fields)


def deliver(app: Any, context: Any, *bodies: str, receive_count: int = 1) -> dict[str, Any]:
    return app.lambda_handler(sqs_event(list(bodies), receive_count), context)  # type: ignore[no-any-return]


def history(lead_id: str = "hot-1") -> list[dict[str, Any]]:
    from leadflow.followup_store import FollowupStore

    return FollowupStore().history("loc-1", lead_id)


def outbox() -> list[dict[str, Any]]:
    from leadflow.followup_store import FollowupStore

    return FollowupStore().outbox("loc-1")


def api(app: Any, context: Any, method: str, path: str, route: str, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    reply = app.lambda_handler(http_event(method, path, route, **kwargs), context)
    return reply["statusCode"], json.loads(reply["body"])


def messages_api(app: Any, context: Any, method: str, lead_id: str, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    """A request to /leads/{lead_id}/messages."""
    path, route = f"/leads/{lead_id}/messages", "/leads/{lead_id}/messages"
    return api(app, context, method, path, route, path_params={"lead_id": lead_id}, **kwargs)


# SQS side


def test_a_job_in_dry_run_goes_to_the_outbox_and_the_history(send: Any, lambda_context: Any) -> None:
    seed_lead("hot-1", HOT, profile=NOON)
    reply = deliver(send, lambda_context, job())
    assert reply == {"batchItemFailures": []}
    [message] = outbox()
    assert message["body"].startswith("Hi Ana!")
    assert message["body"].endswith("Reply STOP to opt out.")
    assert len(message["body"]) <= 160
    [entry] = history()
    assert (entry["job_id"], entry["status"], entry["channel"]) == ("job-1", "sent", "sms")


def test_the_same_job_delivered_twice_sends_once(send: Any, lambda_context: Any) -> None:
    seed_lead("hot-1", HOT, profile=NOON)
    deliver(send, lambda_context, job())
    deliver(send, lambda_context, job(), receive_count=2)
    assert len(outbox()) == 1
    assert len(history()) == 1


@pytest.mark.parametrize(
    ("profile", "paused", "reason"),
    [
        ({"dnd": True}, False, "opted_out"),
        ({"dnd_channels": ["sms"]}, False, "opted_out"),
        ({}, True, "paused"),
        ({"timezone": zone_at(5)}, False, "quiet_hours"),
    ],
)
def test_guardrails_are_checked_again_at_send_time(
    send: Any, lambda_context: Any, profile: dict[str, Any], paused: bool, reason: str
) -> None:
    from leadflow.lead_state import LeadStore

    seed_lead("hot-1", HOT, profile=NOON | profile)
    if paused:
        LeadStore().set_fields("loc-1", "hot-1", {"g:paused_until": repr(time.time() + 3600)})
    assert deliver(send, lambda_context, job()) == {"batchItemFailures": []}
    assert outbox() == []
    [entry] = history()
    assert (entry["status"], entry["reason"]) == ("skipped", reason)


def test_the_daily_cap_stops_the_fourth_message(send: Any, lambda_context: Any) -> None:
    seed_lead("hot-1", HOT, profile=NOON)
    deliver(send, lambda_context, *(job(job_id=f"job-{i}") for i in range(4)))
    assert len(outbox()) == 3
    assert history()[0] | {"at": None} == {
        "job_id": "job-3", "channel": "sms", "status": "skipped", "reason": "daily_cap", "at": None,
    }  # fmt: skip


# Where the lead is: GHL's timezone, else its phone's area code (every zone of it), else the default.
# The send function reads the clock once per job (sending.time.time); these tests set it.


def at_utc(iso: str, monkeypatch: pytest.MonkeyPatch) -> float:
    """Make `iso` (UTC) the send function's now."""
    from leadflow import sending

    at = datetime.fromisoformat(iso).replace(tzinfo=UTC).timestamp()
    monkeypatch.setattr(sending, "time", SimpleNamespace(time=lambda: at))
    return at


@pytest.mark.parametrize(
    ("profile", "utc", "reason"),
    [
        ({"area_code": "415"}, "2026-11-25T13:30", "quiet_hours"),  # 05:30 Pacific, 08:30 in New York
        ({"area_code": "415"}, "2026-11-25T16:30", None),  # 08:30 Pacific
        ({"area_code": "415", "timezone": "America/New_York"}, "2026-11-25T13:30", None),  # GHL's zone decides
        ({"area_code": "850"}, "2026-11-25T13:30", "quiet_hours"),  # 08:30 Eastern is 07:30 Central
        ({"area_code": "850"}, "2026-11-25T14:30", None),  # 09:30 Eastern, 08:30 Central
        ({"area_code": "305", "state": "GA"}, "2026-11-26T01:30", "quiet_hours"),  # 20:30: Florida stops at 8 pm
        ({"area_code": "404", "state": "GA"}, "2026-11-26T01:30", None),
    ],
)
def test_where_the_lead_is_decides_its_hours_at_send_time(
    send: Any, lambda_context: Any, monkeypatch: pytest.MonkeyPatch, profile: dict[str, Any], utc: str, reason: str
) -> None:
    assert settings().default_timezone == "America/New_York"
    at = at_utc(utc, monkeypatch)
    seed_lead("hot-1", HOT, profile={"first_name": "Ana"} | profile, now=at)
    assert deliver(send, lambda_context, job()) == {"batchItemFailures": []}
    [entry] = history()
    assert (entry["status"], entry.get("reason")) == ("skipped" if reason else "sent", reason)
    assert len(outbox()) == (0 if reason else 1)


@pytest.mark.parametrize(("area_code", "sent"), [("305", 3), ("404", 4)])
def test_a_florida_area_code_allows_3_in_24_hours_whatever_the_state(
    send: Any, lambda_context: Any, monkeypatch: pytest.MonkeyPatch, area_code: str, sent: int
) -> None:
    monkeypatch.setenv("MAX_DAILY_FOLLOWUPS_PER_LEAD", "10")
    settings.cache_clear()
    at = at_utc("2026-11-25T17:00", monkeypatch)  # noon in Miami and Atlanta
    seed_lead("hot-1", HOT, profile={"area_code": area_code, "state": "GA"}, now=at)
    deliver(send, lambda_context, *(job(job_id=f"job-{i}") for i in range(4)))
    assert len(outbox()) == sent
    assert [e.get("reason") for e in history() if e["status"] == "skipped"] == ["daily_cap"] * (4 - sent)


def test_an_on_demand_message_to_a_415_lead_at_5_30_pacific_is_quiet_hours(
    send: Any, lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = at_utc("2026-11-25T13:30", monkeypatch)
    seed_lead("hot-1", HOT, profile={"area_code": "415"}, now=at)
    status, reply = messages_api(send, lambda_context, "POST", "hot-1")
    assert (status, reply["reason"]) == (409, "quiet_hours")


def test_an_email_job_has_a_subject(send: Any, lambda_context: Any) -> None:
    seed_lead("hot-1", HOT, profile=NOON)
    deliver(send, lambda_context, job(channel="email"))
    [message] = outbox()
    assert message["subject"]
    assert message["channel"] == "email"


def test_a_malformed_job_fails_alone_in_its_batch(send: Any, lambda_context: Any) -> None:
    seed_lead("hot-1", HOT, profile=NOON)
    reply = deliver(send, lambda_context, "not json", job())
    assert len(reply["batchItemFailures"]) == 1
    assert len(outbox()) == 1


def _send_in_process(redis_url: str, job_id: str) -> None:
    import os

    os.environ["REDIS_URL"] = redis_url
    os.environ["GHL_LOCATION_ID"] = "loc-1"
    from leadflow.jobs import Job
    from leadflow.sending import process_job

    process_job(Job.from_json(job(job_id=job_id)))


def test_the_cap_holds_under_concurrent_senders_in_separate_processes(redis_url: str) -> None:
    seed_lead("hot-1", HOT, profile=NOON)
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_send_in_process, args=(redis_url, f"job-{i}")) for i in range(8)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert [worker.exitcode for worker in workers] == [0] * 8
    assert len(outbox()) == 3
    assert sorted(entry["status"] for entry in history()) == ["sent"] * 3 + ["skipped"] * 5


# Live sending against a local GHL stand-in


def test_live_sms_posts_to_ghl_with_bearer_and_version(send: Any, ghl: StubServer, lambda_context: Any) -> None:
    seed_lead("hot-1", HOT, profile=NOON)
    assert deliver(send, lambda_context, job()) == {"batchItemFailures": []}
    [call] = ghl.calls("POST /conversations/messages")
    assert call["headers"]["Authorization"] == "Bearer pit-test-token"
    assert call["headers"]["Version"] == "2021-04-15"
    assert call["json"]["type"] == "SMS"
    assert call["json"]["contactId"] == "hot-1"
    assert call["json"]["message"].endswith("Reply STOP to opt out.")
    assert history()[0]["status"] == "sent"
    assert outbox() == []


def test_live_email_posts_subject_and_html(send: Any, ghl: StubServer, lambda_context: Any) -> None:
    seed_lead("hot-1", HOT, profile=NOON)
    deliver(send, lambda_context, job(channel="email"))
    [call] = ghl.calls("POST /conversations/messages")
    assert call["json"]["type"] == "Email"
    assert call["json"]["subject"]
    assert call["json"]["html"].startswith("<p>")


def test_a_429_is_retried_after_its_retry_after(send: Any, ghl: StubServer, lambda_context: Any) -> None:
    ghl.replies["POST /conversations/messages"] = [
        (429, {"Retry-After": "1"}, {"message": "Too many requests"}),
        (200, {}, {"messageId": "m-2"}),
    ]
    seed_lead("hot-1", HOT, profile=NOON)
    assert deliver(send, lambda_context, job()) == {"batchItemFailures": []}
    assert len(ghl.calls("POST /conversations/messages")) == 2
    assert history()[0]["status"] == "sent"


def test_a_5xx_hands_the_job_back_to_sqs_and_frees_its_place_under_the_cap(
    send: Any, ghl: StubServer, lambda_context: Any
) -> None:
    from leadflow.followup_store import FollowupStore

    ghl.replies["POST /conversations/messages"] = [(502, {}, {"message": "Bad gateway"})]
    seed_lead("hot-1", HOT, profile=NOON)
    with pytest.raises(BatchProcessingError):  # the whole batch failed: Lambda returns it to the queue
        deliver(send, lambda_context, job())
    assert history() == []
    counts = FollowupStore().followups("loc-1", {"hot-1": 0.0}, time.time())["hot-1"].counts
    assert counts.today == 0
    ghl.replies["POST /conversations/messages"] = [(200, {}, {"messageId": "m-3"})]
    assert deliver(send, lambda_context, job(), receive_count=2) == {"batchItemFailures": []}
    assert history()[0]["status"] == "sent"


def test_a_5xx_on_the_last_attempt_is_recorded_as_failed(send: Any, ghl: StubServer, lambda_context: Any) -> None:
    ghl.replies["POST /conversations/messages"] = [(503, {}, {"message": "Unavailable"})]
    seed_lead("hot-1", HOT, profile=NOON)
    with pytest.raises(BatchProcessingError):
        deliver(send, lambda_context, job(), receive_count=5)
    assert history()[0]["status"] == "failed"


def test_a_4xx_is_recorded_as_failed_with_the_reason(send: Any, ghl: StubServer, lambda_context: Any) -> None:
    ghl.replies["POST /conversations/messages"] = [(400, {}, {"message": "Contact has no phone number"})]
    seed_lead("hot-1", HOT, profile=NOON)
    assert deliver(send, lambda_context, job()) == {"batchItemFailures": []}
    entry = history()[0]
    assert entry["status"] == "failed"
    assert "Contact has no phone number" in entry["reason"]


# Claude against a local Anthropic stand-in


def test_claude_writes_the_message(send: Any, anthropic_api: StubServer, lambda_context: Any) -> None:
    seed_lead("hot-1", HOT, profile=NOON)
    deliver(send, lambda_context, job())
    [message] = outbox()
    assert message["body"] == "Saw you checking home values - want a quick estimate? Reply STOP to opt out."
    assert message["composer"] == "claude"
    [call] = anthropic_api.calls("POST /v1/messages")
    assert "Never invent facts" in call["json"]["system"][0]["text"]
    assert "Ana" in call["json"]["messages"][0]["content"]


def test_claude_overloaded_falls_back_to_the_template(
    send: Any, anthropic_api: StubServer, lambda_context: Any
) -> None:
    overloaded = (529, {}, {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    anthropic_api.replies["POST /v1/messages"] = [overloaded]
    seed_lead("hot-1", HOT, profile=NOON)
    deliver(send, lambda_context, job())
    [message] = outbox()
    assert message["composer"] == "template"
    assert message["body"] == (
        "Hi Ana! I saw you checking home values in your area. Would a free market analysis help? Reply STOP to opt out."
    )


def test_without_a_claude_key_the_template_is_used(send: Any, lambda_context: Any) -> None:
    seed_lead("hot-1", HOT, profile=NOON)
    deliver(send, lambda_context, job())
    assert outbox()[0]["composer"] == "template"


# HTTP side


def test_an_on_demand_send_is_queued_with_202(send: Any, queues: Queues, lambda_context: Any) -> None:
    seed_lead("hot-1", HOT, profile=NOON)
    status, reply = messages_api(
        send, lambda_context, "POST", "hot-1", body={"channel": "sms", "message": "Are you free to talk today?"}
    )
    assert status == 202
    assert reply["status"] == "queued"
    [message] = queues.receive(queues.followup)
    body = json.loads(message["Body"])
    assert (body["job_id"], body["source"], body["message"]) == (
        reply["job_id"],
        "on_demand",
        "Are you free to talk today?",
    )


@pytest.mark.parametrize(
    ("profile", "paused", "reason"),
    [
        ({"dnd": True, "timezone": zone_at(3)}, True, "opted_out"),
        ({"timezone": zone_at(3)}, True, "paused"),
        ({"timezone": zone_at(3)}, False, "quiet_hours"),
    ],
)
def test_an_on_demand_send_is_409_with_the_first_reason(
    send: Any, lambda_context: Any, profile: dict[str, Any], paused: bool, reason: str
) -> None:
    from leadflow.lead_state import LeadStore

    seed_lead("hot-1", HOT, profile=profile)
    if paused:
        LeadStore().set_fields("loc-1", "hot-1", {"g:paused_until": "inf"})
    status, reply = messages_api(send, lambda_context, "POST", "hot-1")
    assert status == 409
    assert reply["reason"] == reason


def test_an_on_demand_send_over_the_cap_is_409_daily_cap(send: Any, lambda_context: Any) -> None:
    seed_lead("hot-1", HOT, profile=NOON)
    deliver(send, lambda_context, *(job(job_id=f"job-{i}") for i in range(3)))
    status, reply = messages_api(send, lambda_context, "POST", "hot-1")
    assert (status, reply["reason"]) == (409, "daily_cap")


def test_an_on_demand_send_with_a_bad_channel_is_422(send: Any, lambda_context: Any) -> None:
    seed_lead("hot-1", HOT, profile=NOON)
    status, reply = messages_api(send, lambda_context, "POST", "hot-1", body={"channel": "fax"})
    assert status == 422
    assert reply["message"].startswith("channel")


def test_history_is_newest_first_and_empty_for_an_unknown_lead(send: Any, lambda_context: Any) -> None:
    seed_lead("hot-1", HOT, profile=NOON)
    deliver(send, lambda_context, *(job(job_id=f"job-{i}") for i in range(4)))
    status, reply = messages_api(send, lambda_context, "GET", "hot-1")
    assert status == 200
    assert [m["job_id"] for m in reply["messages"]] == ["job-3", "job-2", "job-1", "job-0"]
    assert reply["messages"][0]["reason"] == "daily_cap"
    status, reply = messages_api(send, lambda_context, "GET", "nobody")
    assert (status, reply) == (200, {"messages": []})


def test_stats_count_jobs_by_outcome_and_read_the_dlq(send: Any, queues: Queues, lambda_context: Any) -> None:
    from leadflow.followup_store import FollowupStore

    seed_lead("hot-1", HOT, profile=NOON)
    FollowupStore().count_queued("loc-1", 5)
    deliver(send, lambda_context, *(job(job_id=f"job-{i}") for i in range(4)))
    queues.client.send_message(QueueUrl=queues.followup_dlq, MessageBody=job(job_id="dead"))
    status, stats = api(send, lambda_context, "GET", "/followups/stats", "/followups/stats")
    assert status == 200
    assert stats["total_tasks"] == 5
    assert stats["sent"] == 3
    assert stats["skipped"] == {"daily_cap": 1}
    assert stats["skipped_total"] == 1
    assert stats["pending"] == 1
    assert stats["failed"] == 0
    assert stats["dlq_depth"] == 1
    assert stats["is_running"] is True


def test_monitoring_can_be_switched_off_and_on(send: Any, lambda_context: Any) -> None:
    for enabled in (False, True):
        status, reply = api(
            send, lambda_context, "PUT", "/followups/monitoring", "/followups/monitoring", body={"enabled": enabled}
        )
        assert (status, reply) == (200, {"is_running": enabled})
        _, stats = api(send, lambda_context, "GET", "/followups/stats", "/followups/stats")
        assert stats["is_running"] is enabled


def test_monitoring_without_enabled_is_422(send: Any, lambda_context: Any) -> None:
    status, reply = api(send, lambda_context, "PUT", "/followups/monitoring", "/followups/monitoring", body={})
    assert status == 422
    assert reply["message"].startswith("enabled")


def test_an_urgent_lead_by_on_demand_default_channel_is_sms(send: Any, queues: Queues, lambda_context: Any) -> None:
    seed_lead("urgent-1", URGENT, profile=NOON)
    status, _ = messages_api(send, lambda_context, "POST", "urgent-1")
    assert status == 202
    assert json.loads(queues.receive(queues.followup)[0]["Body"])["channel"] == "sms"
