"""Nothing lost: Redis stops mid-run, verified events go to the intake queue (moto SQS) with a 200,
and the same function replays them into Redis once it is back; 429 only when both are down.
Also the fast path: an urgent lead's webhook puts a follow-up job on the queue at once."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from leadflow.signals import Signal
from tests.helpers import URGENT, RedisServer, load_event, seed_lead, zone_at
from tests.integration.test_webhook_support import (
    Intake,
    activity_event,
    ghl_body,
    ghl_event,
    intake_fixture,  # noqa: F401  (the `intake` fixture)
    iso,
    lead,
    sqs_intake_event,
    workflow_event,
)


def fresh_clients() -> None:
    """What a new Lambda instance has: new Redis client and breaker, new lead store."""
    from leadflow import redis_client
    from leadflow.intake import service

    redis_client.cache.cache_clear()
    service._store_for.cache_clear()


@pytest.fixture
def own_redis(intake: Intake, monkeypatch: pytest.MonkeyPatch) -> Iterator[RedisServer]:
    """A redis-server of this test's own, which it may stop and start."""
    from leadflow.config import settings

    server = RedisServer()
    server.start()
    monkeypatch.setenv("REDIS_URL", server.url)
    settings.cache_clear()
    fresh_clients()
    try:
        yield server
    finally:
        server.stop()
        fresh_clients()


# These stop a redis-server of their own; a cluster's outage is tests/integration/test_cluster_failover.py's.
OUTAGE = pytest.mark.standalone_redis("stops and restarts a redis-server of its own to simulate an outage")


def activity(contact: str, signal: str, **extra: Any) -> dict[str, Any]:
    event = load_event("activity_event")
    event.update(contact_id=contact, signal=signal, occurred_at=iso(time.time() - 30), **extra)
    return event


@OUTAGE
def test_events_while_redis_is_down_are_spilled_and_arrive_on_replay(
    intake: Intake, own_redis: RedisServer, capfd: pytest.CaptureFixture[str]
) -> None:
    # Given Redis goes away mid-run
    assert intake(activity_event(activity("before", "listing_view")))[1] == {"status": "accepted"}
    own_redis.stop()

    # When events of every route arrive
    replies = [
        intake(ghl_event(ghl_body("inbound_message_sms", locationId="loc-1", contactId="sms-lead"))),
        intake(ghl_event(ghl_body("appointment_create", locationId="loc-1"))),
        intake(activity_event({"events": [activity("batch-1", "pricing_tool_usage"), activity("batch-2", "bogus")]})),
        intake(workflow_event({"contact_id": "wf-lead", "location": {"id": "loc-1"}, "signal": "property_search"})),
    ]

    # Then each is answered 200 accepted and waits on the intake queue
    assert [status for status, _ in replies] == [200, 200, 200, 200]
    assert all(body["status"] == "accepted" for _, body in replies)
    assert replies[2][1]["rejected"] == [{"index": 1, "message": replies[2][1]["rejected"][0]["message"]}]
    spilled = intake.spilled()
    assert len(spilled) == 4
    assert '"EventsSpilled"' in capfd.readouterr().out

    # When Redis is back and the intake queue delivers them to the function
    own_redis.start()
    fresh_clients()
    result = intake.app.lambda_handler(sqs_intake_event(spilled), intake.context)

    # Then every event is in Redis
    assert result == {"batchItemFailures": []}
    assert lead("sms-lead").signals[Signal.SMS_RESPONSE].count == 1
    assert lead("sms-lead").paused_until > time.time()
    assert lead("9NkT25Vor1v4aQatFsv2").appointments == {"0007BWpSzSwfiuSl0tR2"}
    assert lead("batch-1").signals[Signal.PRICING_TOOL_USAGE].count == 1
    assert lead("batch-2") is None
    assert lead("wf-lead").signals[Signal.PROPERTY_SEARCH].count == 1

    # And a second delivery of the same messages changes nothing
    assert intake.app.lambda_handler(sqs_intake_event(spilled), intake.context) == {"batchItemFailures": []}
    assert lead("batch-1").signals[Signal.PRICING_TOOL_USAGE].count == 1


@OUTAGE
def test_a_replay_while_redis_is_still_down_returns_the_batch_to_the_queue(
    intake: Intake, own_redis: RedisServer
) -> None:
    own_redis.stop()
    intake(activity_event(activity("later", "website_visit")))
    intake(activity_event(activity("later-2", "website_visit")))
    spilled = intake.spilled()
    event = sqs_intake_event(spilled)
    result = intake.app.lambda_handler(event, intake.context) if False else None
    from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

    with pytest.raises(BatchProcessingError):  # every record failed: the whole batch returns to the queue
        intake.app.lambda_handler(event, intake.context)
    assert result is None


@OUTAGE
def test_one_failing_record_is_reported_alone(intake: Intake, own_redis: RedisServer) -> None:
    own_redis.stop()
    intake(activity_event(activity("later", "website_visit")))
    good = intake.spilled()[0]
    own_redis.start()
    fresh_clients()
    event = sqs_intake_event([good, json.dumps({"v": 1, "route": "activity"})])
    result = intake.app.lambda_handler(event, intake.context)
    assert result == {"batchItemFailures": [{"itemIdentifier": event["Records"][1]["messageId"]}]}
    assert lead("later").signals[Signal.WEBSITE_VISIT].count == 1


@OUTAGE
def test_when_redis_and_sqs_both_fail_the_reply_is_429_with_retry_after(
    intake: Intake, own_redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from leadflow.config import settings

    own_redis.stop()
    monkeypatch.setenv("INTAKE_QUEUE_URL", intake.intake_url + "-gone")
    settings.cache_clear()
    response = intake.app.lambda_handler(ghl_event(ghl_body("inbound_message_sms")), intake.context)
    assert response["statusCode"] == 429
    assert int(response["headers"]["retry-after"]) > 0


@OUTAGE
def test_without_an_intake_queue_a_redis_outage_is_a_429(
    intake: Intake, own_redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from leadflow.config import settings

    own_redis.stop()
    monkeypatch.delenv("INTAKE_QUEUE_URL")
    settings.cache_clear()
    assert intake(activity_event(activity("x", "website_visit")))[0] == 429


def test_an_urgent_leads_webhook_queues_a_fast_path_job(intake: Intake) -> None:
    seed_lead("hot-lead", URGENT, profile={"timezone": zone_at(12)})
    assert intake(activity_event(activity("hot-lead", "pricing_tool_usage")))[1] == {"status": "accepted"}
    [job] = intake.jobs()
    assert (job["lead_id"], job["source"]) == ("hot-lead", "fast_path")


def test_a_failing_fast_path_never_fails_the_webhook(intake: Intake, monkeypatch: pytest.MonkeyPatch) -> None:
    from leadflow import followup

    def broken(*_: Any, **__: Any) -> None:
        raise RuntimeError("queue exploded")

    monkeypatch.setattr(followup, "queue_fast_path", broken)
    seed_lead("hot-lead", URGENT, profile={"timezone": zone_at(12)})
    assert intake(activity_event(activity("hot-lead", "pricing_tool_usage"))) == (200, {"status": "accepted"})
