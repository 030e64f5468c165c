"""Intake under faults (the sending-safety contract), over real Function URL and intake-queue events:
ids are data, deliveries de-duplicate globally, a retried Redis call is not a different answer, a
recorded event always reaches the index and the fast path, and the webhook answers in its time."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from leadflow.errors import StoreUnavailable
from tests.helpers import URGENT, RedisServer, SlowReplyProxy, blackhole, raw_redis, seed_lead, zone_at
from tests.integration.test_webhook_support import (
    Intake,
    activity_event,
    ghl_body,
    ghl_event,
    intake_fixture,  # noqa: F401  (the `intake` fixture)
    lead,
    sqs_intake_event,
)

CONTACT, LOCATION = "nmFmQEsNgz6AVpgLVUJ0", "ve9EPM428h8vShlRW1KT"


def activity(contact: str, location: str | None = None, signal: str = "listing_view", **extra: Any) -> dict[str, Any]:
    event = {"type": "activity", "contact_id": contact, "signal": signal} | extra
    return event | ({"location_id": location} if location else {})


# --- ids are data, not syntax ---------------------------------------------------------------------


def test_colon_bearing_ids_never_share_a_lead(intake: Intake) -> None:
    assert intake(activity_event(activity("b:c", "a", signal="pricing_tool_usage")))[0] == 200
    assert intake(activity_event(activity("c", "a:b", signal="listing_view")))[0] == 200
    first, second = lead("b:c", "a"), lead("c", "a:b")
    assert [s.value for s in first.signals] == ["pricing_tool_usage"]
    assert [s.value for s in second.signals] == ["listing_view"]


def test_braces_and_percent_signs_in_ids_are_kept_apart(intake: Intake) -> None:
    assert intake(activity_event(activity("x}y", "loc{1}")))[0] == 200
    assert intake(activity_event(activity("x%7Dy", "loc%7B1%7D")))[0] == 200
    assert lead("x}y", "loc{1}").event_count == 1
    assert lead("x%7Dy", "loc%7B1%7D").event_count == 1


def test_a_contact_id_over_128_characters_is_a_422_never_cut_short(intake: Intake) -> None:
    long_id = "c" * 128 + "x"
    status, reply = intake(activity_event(activity(long_id, "loc-1")))
    assert (status, reply["message"]) == (422, "contact_id: at most 128 characters")
    assert lead("c" * 128, "loc-1") is None


def test_in_a_batch_a_long_id_is_rejected_alone(intake: Intake) -> None:
    status, reply = intake(activity_event({"events": [activity("ok-1", "loc-1"), activity("c" * 129, "loc-1")]}))
    assert status == 200
    assert reply["rejected"] == [{"index": 1, "message": "contact_id: at most 128 characters"}]
    assert lead("ok-1", "loc-1") is not None


def test_a_location_id_query_over_128_characters_is_a_422(intake: Intake) -> None:
    status, reply = intake(activity_event(activity("c1"), query={"location_id": "l" * 129}))
    assert (status, reply["message"]) == (422, "location_id: at most 128 characters")


def test_a_ghl_contact_id_over_128_characters_is_a_422(intake: Intake) -> None:
    status, reply = intake(ghl_event(ghl_body("contact_create", id="c" * 129)))
    assert status == 422
    assert "id: at most 128 characters" in reply["message"]


# --- deliveries are de-duplicated globally --------------------------------------------------------


def test_one_delivery_under_two_location_ids_is_recorded_once(intake: Intake) -> None:
    # Given an activity delivery whose event names no location: the unsigned ?location_id decides
    first = activity_event(activity("c1"), msg_id="msg_same", query={"location_id": "loc-a"})
    again = activity_event(activity("c1"), msg_id="msg_same", query={"location_id": "loc-b"})
    again["headers"] |= {k: first["headers"][k] for k in ("webhook-id", "webhook-timestamp", "webhook-signature")}
    again["body"] = first["body"]
    # When the same signed delivery arrives under another ?location_id
    assert intake(first) == (200, {"status": "accepted"})
    assert intake(again) == (200, {"status": "duplicate"})
    # Then it is recorded once, under the first
    assert lead("c1", "loc-a").event_count == 1
    assert lead("c1", "loc-b") is None
    # And its own retry under the first location is an ordinary duplicate too
    assert intake(first) == (200, {"status": "duplicate"})
    assert lead("c1", "loc-a").event_count == 1


# --- a retried Redis call is not a different answer -----------------------------------------------


@pytest.fixture
def slow_redis(intake: Intake, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[SlowReplyProxy]:
    """REDIS_URL through a proxy that can answer late (after redis-py's 0.5 s socket timeout)."""
    from leadflow import config, redis_client
    from tests.integration.test_webhook_support import clear_intake_caches

    proxy = SlowReplyProxy(redis_server.port)
    monkeypatch.setenv("REDIS_URL", proxy.url)
    config.settings.cache_clear()
    redis_client.cache.cache_clear()
    clear_intake_caches()
    yield proxy
    proxy.close()


# A proxy in front of one redis-server: a cluster client would be sent past it (CLUSTER SLOTS names the
# nodes' own ports), so these two run against the single redis-server only.
LATE_REPLY = pytest.mark.standalone_redis("a TCP proxy in front of the one redis-server holds a reply back")


@LATE_REPLY
def test_an_event_whose_reply_came_late_is_accepted_and_recorded_once(
    intake: Intake, slow_redis: SlowReplyProxy
) -> None:
    # Given Redis warm (scripts loaded), then one reply held back past the client's timeout
    assert intake(ghl_event(ghl_body("contact_create", webhookId="warm-up")))[0] == 200
    slow_redis.delay_next_reply(0.8)
    # When an event is recorded: it ran, its answer was late, redis-py sent it again
    status, reply = intake(ghl_event(ghl_body("inbound_message_sms", webhookId="reply-1")))
    # Then it is accepted (not a duplicate of itself) and counted once
    assert (status, reply) == (200, {"status": "accepted"})
    stored = lead("cI08i1Bls3iTB9bKgFJh", "l1C08ntBrFjLS0elLIYU")
    assert stored.event_count == 1
    assert stored.paused_until > time.time()


@LATE_REPLY
def test_a_claim_whose_reply_came_late_holds_the_slot(intake: Intake, slow_redis: SlowReplyProxy) -> None:
    from leadflow.followup_store import FollowupStore

    store = FollowupStore()
    assert store.claim("loc-1", [("warm", "job-warm")]) == {"job-warm": "ok"}
    slow_redis.delay_next_reply(0.8)
    assert store.claim("loc-1", [("lead-1", "job-1")]) == {"job-1": "ok"}  # not "pending" on itself
    assert store.claim("loc-1", [("lead-1", "job-2")]) == {"job-2": "pending"}  # a different job still waits
    store.release("loc-1", "lead-1", "job-1")
    assert store.followups("loc-1", {"lead-1": 0.0}, time.time())["lead-1"].pending is False


# --- a recorded event always reaches the index and the fast path ----------------------------------


def test_an_event_recorded_before_its_index_write_failed_reaches_the_index_and_fast_path_on_replay(
    intake: Intake, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cluster mode: the index lives in another slot than the lead, so its write is a round trip of
    its own after the record script (standalone, the script writes both at once)."""
    from leadflow.lead_state import LeadStore, index_key
    from leadflow.redis_client import cache

    monkeypatch.setattr(cache(), "cluster", True)  # the keys' layout of cluster mode, on one server

    # Given an urgent lead the index has lost sight of
    seed_lead(CONTACT, URGENT, location_id=LOCATION, profile={"timezone": zone_at(12)})
    raw = raw_redis(redis_url)
    raw.zrem(index_key(LOCATION), CONTACT)
    # When Redis fails between recording an event and indexing it
    original = LeadStore._index
    calls = {"n": 0}

    def index_fails_once(self: LeadStore, *args: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise StoreUnavailable("redis unavailable: TimeoutError")
        original(self, *args)

    monkeypatch.setattr(LeadStore, "_index", index_fails_once)
    assert intake(ghl_event(ghl_body("contact_update", dnd=False, webhookId="half-1"))) == (200, {"status": "accepted"})
    [spilled] = intake.spilled()
    assert intake.jobs() == []
    # Then its replay, a duplicate by then, still writes the index and queues the fast path
    reply = intake.app.lambda_handler(sqs_intake_event([spilled]), intake.context)
    assert reply == {"batchItemFailures": []}
    assert raw.zscore(index_key(LOCATION), CONTACT) is not None
    assert lead(CONTACT, LOCATION).event_count == sum(URGENT.values())  # the contact event has no signal
    [queued] = intake.jobs()
    assert queued["lead_id"] == CONTACT


# --- the webhook answers within its timeout -------------------------------------------------------


def test_a_blackholed_sqs_endpoint_still_answers_in_time_and_frees_the_slot(
    intake: Intake, monkeypatch: pytest.MonkeyPatch
) -> None:
    from leadflow import jobs
    from leadflow.followup_store import FollowupStore

    # Given an urgent lead, and an SQS endpoint that accepts connections and never answers
    seed_lead(CONTACT, URGENT, location_id=LOCATION, profile={"timezone": zone_at(12)})
    listener, url = blackhole()
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", url)
    jobs.sqs.cache_clear()
    try:
        # When an event makes the fast path queue a job
        started = time.monotonic()
        status, _ = intake(ghl_event(ghl_body("contact_update", dnd=False, webhookId="fast-1")))
        elapsed = time.monotonic() - started
    finally:
        listener.close()
    # Then the webhook answers well inside its 10 s timeout, and the lead's slot is free again
    assert status == 200
    assert 2 < elapsed < 9  # it did wait on SQS, and answered inside the function's 10 s timeout
    assert FollowupStore().followups(LOCATION, {CONTACT: 0.0}, time.time())[CONTACT].pending is False
