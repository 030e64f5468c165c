"""Write-back to GHL (ARCHITECTURE.md, "Contract: GHL both ways", Write-back): sync jobs through the
send handler's real SQS events against a GHL stand-in that records every request; their queueing by
the webhook and the monitor through those handlers (moto SQS)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

from leadflow import ghl
from leadflow.config import settings
from tests.conftest import Queues
from tests.helpers import HOT, URGENT, StubServer, count_round_trips, load_app, seed_lead, zone_at
from tests.integration.test_send_function import NOON, deliver, outbox
from tests.integration.test_webhook_support import (
    Intake,
    activity_event,
    ghl_body,
    ghl_event,
    intake_fixture,  # noqa: F401  (the `intake` fixture)
    iso,
)

FIELD_IDS = {"leadflow_score": "f-score", "leadflow_intent": "f-intent", "leadflow_why": "f-why"}
FIELDS = "/locations/loc-1/customFields"
WARMING = {"pricing_tool_usage": 2, "neighborhood_research": 1}  # 57.5: hot


def field(name: str, field_id: str) -> dict[str, Any]:
    """A custom field as GHL lists and creates it (apps/locations.json, CustomFieldSchema)."""
    data_type = "NUMERICAL" if name == "leadflow_score" else "TEXT"
    return {"id": field_id, "name": name, "fieldKey": f"contact.{name}", "dataType": data_type,
            "locationId": "loc-1", "model": "contact", "position": 0}  # fmt: skip


def contact_routes(*contacts: str) -> dict[str, list[tuple[int, dict[str, str], Any]]]:
    routes: dict[str, list[tuple[int, dict[str, str], Any]]] = {}
    for cid in contacts:
        routes[f"PUT /contacts/{cid}"] = [(200, {}, {"succeded": True, "contact": {"id": cid}})]
        routes[f"DELETE /contacts/{cid}/tags"] = [(200, {}, {"tags": []})]
        routes[f"POST /contacts/{cid}/tags"] = [(201, {}, {"tags": ["leadflow:hot"]})]
    return routes


@pytest.fixture
def crm(monkeypatch: pytest.MonkeyPatch) -> Iterator[StubServer]:
    """GHL with none of leadflow's fields yet: a GET lists another field, each POST creates the next."""
    server = StubServer(
        {
            f"GET {FIELDS}": [(200, {}, {"customFields": [field("pincode", "f-other")]})],
            f"POST {FIELDS}": [(201, {}, {"customField": field(name, fid)}) for name, fid in FIELD_IDS.items()],
            **contact_routes("lead-1", "lead-2"),
        }
    )
    monkeypatch.setenv("GHL_API_KEY", "pit-test-token")
    monkeypatch.setenv("GHL_API_BASE_URL", server.url)
    monkeypatch.setenv("SEND_MODE", "live")
    settings.cache_clear()
    yield server
    server.close()


@pytest.fixture
def send(redis_url: str, queues: Queues) -> Any:
    return load_app("send")


def sync(lead_id: str = "lead-1", job_id: str = "sync-1") -> str:
    return json.dumps({"kind": "sync", "lead_id": lead_id, "location_id": "loc-1", "job_id": job_id})


def score_now(lead_id: str = "lead-1") -> Any:
    from leadflow.lead_state import LeadStore
    from leadflow.scoring import score_lead

    state = LeadStore().load("loc-1", lead_id)
    return score_lead(lead_id, state, datetime.now(UTC), (8, 21), "America/New_York")


def add(lead_id: str, signals: dict[str, int]) -> None:
    seed_lead(lead_id, signals, profile=NOON)


# --- what is written, and when ------------------------------------------------------------------


def test_an_intent_change_writes_the_fields_then_swaps_the_tag_delete_before_post(
    send: Any, crm: StubServer, lambda_context: Any
) -> None:
    seed_lead("lead-1", HOT, profile=NOON)
    assert deliver(send, lambda_context, sync()) == {"batchItemFailures": []}

    score = score_now()
    assert [r["key"] for r in crm.requests] == [
        f"GET {FIELDS}", f"POST {FIELDS}", f"POST {FIELDS}", f"POST {FIELDS}",
        "PUT /contacts/lead-1", "DELETE /contacts/lead-1/tags", "POST /contacts/lead-1/tags",
    ]  # fmt: skip
    [put] = crm.calls("PUT /contacts/lead-1")
    assert put["json"] == {
        "customFields": [
            {"id": "f-score", "field_value": score.likelihood_score},
            {"id": "f-intent", "field_value": "hot"},
            {"id": "f-why", "field_value": "pricing tool x2, agent inquiry x1, neighborhood research x1"},
        ]
    }
    assert round(score.likelihood_score, 1) == score.likelihood_score
    # the tag swap: the other leadflow tags removed, then the new one added; the contact's own
    # tags never sent (a PUT of `tags` replaces the whole list)
    assert crm.calls("DELETE /contacts/lead-1/tags")[0]["json"] == {
        "tags": ["leadflow:cold", "leadflow:warm", "leadflow:urgent"]
    }
    assert crm.calls("POST /contacts/lead-1/tags")[0]["json"] == {"tags": ["leadflow:hot"]}
    assert all("tags" not in (r["json"] or {}) for r in crm.requests if r["key"].startswith("PUT"))
    created = [r["json"] for r in crm.calls(f"POST {FIELDS}")]
    assert [(c["name"], c["dataType"], c["model"]) for c in created] == [
        ("leadflow_score", "NUMERICAL", "contact"), ("leadflow_intent", "TEXT", "contact"),
        ("leadflow_why", "TEXT", "contact"),
    ]  # fmt: skip
    assert {r["headers"]["Version"] for r in crm.requests} == {"2021-07-28"}
    assert {r["headers"]["Authorization"] for r in crm.requests} == {"Bearer pit-test-token"}


def test_no_change_no_write_none_within_ten_points_and_fields_alone_for_a_move_of_ten(
    send: Any, crm: StubServer, lambda_context: Any
) -> None:
    seed_lead("lead-1", WARMING, profile=NOON)
    deliver(send, lambda_context, sync(job_id="sync-1"))
    first = score_now().likelihood_score
    written = len(crm.requests)

    # The same state again: nothing to write
    deliver(send, lambda_context, sync(job_id="sync-2"))
    assert len(crm.requests) == written

    # A move inside the 10-point band, same intent: nothing
    add("lead-1", {"listing_view": 1})
    assert score_now().intent_level == "hot"
    assert abs(score_now().likelihood_score - first) < 10
    deliver(send, lambda_context, sync(job_id="sync-3"))
    assert len(crm.requests) == written

    # 10 points or more, same intent: the fields, no tag calls
    add("lead-1", {"market_report_engagement": 2})
    now = score_now()
    assert now.intent_level == "hot"
    assert now.likelihood_score - first >= 10
    deliver(send, lambda_context, sync(job_id="sync-4"))
    assert [r["key"] for r in crm.requests[written:]] == ["PUT /contacts/lead-1"]
    assert crm.requests[-1]["json"]["customFields"][0] == {"id": "f-score", "field_value": now.likelihood_score}

    # A new intent: the fields and the tag swap
    add("lead-1", URGENT)
    assert score_now().intent_level == "urgent"
    deliver(send, lambda_context, sync(job_id="sync-5"))
    assert [r["key"] for r in crm.requests[written + 1 :]] == [
        "PUT /contacts/lead-1", "DELETE /contacts/lead-1/tags", "POST /contacts/lead-1/tags",
    ]  # fmt: skip
    assert crm.requests[-2]["json"] == {"tags": ["leadflow:cold", "leadflow:warm", "leadflow:hot"]}
    assert crm.requests[-1]["json"] == {"tags": ["leadflow:urgent"]}


def test_a_cold_lead_never_written_is_left_alone(send: Any, crm: StubServer, lambda_context: Any) -> None:
    seed_lead("lead-1", {"website_visit": 1}, profile=NOON)
    deliver(send, lambda_context, sync())
    assert crm.requests == []


def test_the_fields_are_created_once_per_location_then_cached(send: Any, crm: StubServer, lambda_context: Any) -> None:
    from leadflow import redis_client

    seed_lead("lead-1", HOT, profile=NOON)
    seed_lead("lead-2", WARMING, profile=NOON)
    deliver(send, lambda_context, sync("lead-1", "sync-1"))
    redis_client.cache.cache_clear()  # another instance: the ids come from Redis
    deliver(send, lambda_context, sync("lead-2", "sync-2"))

    assert len(crm.calls(f"GET {FIELDS}")) == 1
    assert len(crm.calls(f"POST {FIELDS}")) == 3
    assert crm.calls("PUT /contacts/lead-2")[0]["json"]["customFields"][1] == {"id": "f-intent", "field_value": "hot"}


def test_fields_that_exist_in_ghl_are_found_by_key_not_created_again(
    send: Any, crm: StubServer, lambda_context: Any
) -> None:
    # Given a location whose fields exist (created before leadflow's cache was lost, or by hand)
    existing = [field("pincode", "f-other")] + [field(name, f"old-{name}") for name in FIELD_IDS]
    crm.replies[f"GET {FIELDS}"] = [(200, {}, {"customFields": existing})]
    seed_lead("lead-1", HOT, profile=NOON)
    deliver(send, lambda_context, sync())
    assert crm.calls(f"POST {FIELDS}") == []
    assert [f["id"] for f in crm.calls("PUT /contacts/lead-1")[0]["json"]["customFields"]] == [
        "old-leadflow_score", "old-leadflow_intent", "old-leadflow_why",
    ]  # fmt: skip


def test_concurrent_first_write_backs_of_a_location_create_each_field_once(
    send: Any, crm: StubServer, lambda_context: Any
) -> None:
    from leadflow.writeback import SyncJob, process_sync

    # Given GHL slow to list the fields, and two leads' first write-backs at the same moment
    crm.replies[f"GET {FIELDS}"] = [(200, {"X-Stub-Delay": "0.5"}, {"customFields": []})]
    seed_lead("lead-1", HOT, profile=NOON)
    seed_lead("lead-2", WARMING, profile=NOON)
    outcomes: list[dict[str, Any]] = []
    threads = [
        threading.Thread(target=lambda cid=cid: outcomes.append(process_sync(SyncJob(f"s-{cid}", cid, "loc-1"))))
        for cid in ("lead-1", "lead-2")
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Then one of them found and created the fields; the other waited for their ids
    assert [o["status"] for o in outcomes] == ["written", "written"]
    assert len(crm.calls(f"GET {FIELDS}")) == 1
    assert len(crm.calls(f"POST {FIELDS}")) == 3


def test_a_write_back_ghl_failed_is_retried_by_sqs_and_written_on_redelivery(
    send: Any, crm: StubServer, lambda_context: Any
) -> None:
    put = "PUT /contacts/lead-1"
    # Given GHL failing every attempt the client makes within one delivery (a PUT is retried in the call)
    unavailable = (503, {}, {"message": "unavailable"})
    crm.replies[put] = [unavailable] * ghl.MAX_ATTEMPTS + list(contact_routes("lead-1")[put])
    seed_lead("lead-1", HOT, profile=NOON)
    with pytest.raises(BatchProcessingError):  # back to the queue: every write-back call is idempotent
        deliver(send, lambda_context, sync())
    assert crm.calls("POST /contacts/lead-1/tags") == []

    assert deliver(send, lambda_context, sync(), receive_count=2) == {"batchItemFailures": []}
    assert len(crm.calls("PUT /contacts/lead-1")) == ghl.MAX_ATTEMPTS + 1
    assert crm.calls("POST /contacts/lead-1/tags")[0]["json"] == {"tags": ["leadflow:hot"]}


def test_in_dry_run_the_write_back_goes_to_the_outbox(send: Any, lambda_context: Any) -> None:
    seed_lead("lead-1", HOT, profile=NOON)
    deliver(send, lambda_context, sync(job_id="sync-1"))
    deliver(send, lambda_context, sync(job_id="sync-2"))  # no change: nothing more
    [entry] = outbox()
    assert entry["kind"] == "sync"
    assert entry["custom_fields"] == {
        "leadflow_score": score_now().likelihood_score, "leadflow_intent": "hot",
        "leadflow_why": "pricing tool x2, agent inquiry x1, neighborhood research x1",
    }  # fmt: skip
    assert entry["tags"] == {"remove": ["leadflow:cold", "leadflow:warm", "leadflow:urgent"], "add": ["leadflow:hot"]}


# --- who queues, and how often -------------------------------------------------------------------


def activity(contact: str, signal: str) -> dict[str, Any]:
    return {"type": "activity", "location_id": "loc-1", "contact_id": contact, "signal": signal,
            "occurred_at": iso(time.time() - 5)}  # fmt: skip


def sync_jobs(sqs: Any, queue_url: str) -> list[dict[str, Any]]:
    bodies = []
    while got := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", []):
        bodies += [json.loads(m["Body"]) for m in got]
    return [body for body in bodies if body.get("kind") == "sync"]


def test_a_burst_of_twenty_events_makes_one_sync_job_and_the_monitor_writes_its_end(
    intake: Intake, lambda_context: Any
) -> None:
    from leadflow.lead_state import lead_prefix
    from leadflow.redis_client import cache

    # A burst: the first event queues the write-back at once; the others find the lead's minute taken
    for _ in range(20):
        assert intake(activity_event(activity("burst", "pricing_tool_usage")))[1] == {"status": "accepted"}
    [body] = sync_jobs(intake.sqs, intake.followup_url)
    assert set(body) == {"kind", "lead_id", "location_id", "job_id"}
    assert (body["kind"], body["lead_id"], body["location_id"]) == ("sync", "burst", "loc-1")

    # A minute later the monitor's run queues one more, for the state the rest of the burst left
    cache().run(lambda r: r.delete(lead_prefix("loc-1", "burst") + ":sync-queued"))
    load_app("monitor").lambda_handler({"source": "aws.events"}, lambda_context)
    assert [body["lead_id"] for body in sync_jobs(intake.sqs, intake.followup_url)] == ["burst"]
    load_app("monitor").lambda_handler({"source": "aws.events"}, lambda_context)
    assert sync_jobs(intake.sqs, intake.followup_url) == []  # the waiting lead was taken off the set


@pytest.mark.standalone_redis(
    "the waiting set lives in the location's slot: cluster mode checks it in a second round trip"
)
def test_a_bursts_later_events_cost_one_round_trip_each_and_the_monitor_still_writes_its_end(
    intake: Intake, lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from leadflow.lead_state import window_key
    from leadflow.redis_client import cache

    # Given a hot lead never written back: its first event takes the window and waits for the monitor
    seed_lead("burst", WARMING, profile={"timezone": zone_at(12)})
    intake(activity_event(activity("burst", "listing_view")))
    assert [body["lead_id"] for body in sync_jobs(intake.sqs, intake.followup_url)] == ["burst"]

    # When more events come within the window: each is one round trip to Redis, and queues nothing
    sent = count_round_trips(monkeypatch)
    for _ in range(5):
        assert intake(activity_event(activity("burst", "listing_view")))[1] == {"status": "accepted"}
    assert len(sent) == 5
    assert sync_jobs(intake.sqs, intake.followup_url) == []

    # Then after the window the monitor's run queues the write-back of the burst's end
    cache().run(lambda r: r.delete(window_key("loc-1", "burst")))
    load_app("monitor").lambda_handler({"source": "aws.events"}, lambda_context)
    assert [body["lead_id"] for body in sync_jobs(intake.sqs, intake.followup_url)] == ["burst"]


def test_the_webhook_queues_a_write_back_only_when_the_score_crossed_the_thresholds(intake: Intake) -> None:
    from leadflow.lead_state import window_key
    from leadflow.redis_client import cache
    from leadflow.writeback import Written, _remember

    # Given a lead whose write-back says what its score says now (and no job queued)
    recorded = seed_lead("lead-1", WARMING, profile={"timezone": zone_at(12)})
    _remember(cache(), "loc-1", "lead-1", Written(recorded.likelihood, "hot"), time.time(), 3600)
    cache().run(lambda r: r.delete(window_key("loc-1", "lead-1")))

    # When an event moves it less than 10 points: nothing is queued
    intake(activity_event(activity("lead-1", "listing_view")))
    assert sync_jobs(intake.sqs, intake.followup_url) == []

    # When events take it to urgent: a sync job
    for signal, n in URGENT.items():
        for _ in range(n):
            intake(activity_event(activity("lead-1", signal)))
    assert [body["lead_id"] for body in sync_jobs(intake.sqs, intake.followup_url)] == ["lead-1"]


def test_the_monitor_queues_write_backs_for_rescored_leads_whose_intent_changed(
    queues: Queues, redis_url: str, lambda_context: Any
) -> None:
    from leadflow.redis_client import cache
    from leadflow.writeback import Written, _remember

    monitor = load_app("monitor")
    # Given a lead written back as urgent that is hot now, and one written back as it is
    seed_lead("cooled", HOT, profile={"timezone": zone_at(12)})
    _remember(cache(), "loc-1", "cooled", Written(85.0, "urgent"), time.time() - 3600, 3600)
    same = seed_lead("same", HOT, profile={"timezone": zone_at(12)})
    _remember(cache(), "loc-1", "same", Written(same.likelihood, "hot"), time.time() - 3600, 3600)

    monitor.lambda_handler({"source": "aws.events"}, lambda_context)

    assert [body["lead_id"] for body in sync_jobs(queues.client, queues.followup)] == ["cooled"]


def test_a_contact_delete_erases_the_write_back_and_handoff_records(intake: Intake) -> None:
    from leadflow.lead_state import lead_prefix
    from leadflow.redis_client import cache

    contact = "nmFmQEsNgz6AVpgLVUJ0"  # the fixtures' contact
    intake(ghl_event(ghl_body("contact_create", locationId="loc-1", webhookId="c-1")))
    intake(activity_event(activity(contact, "pricing_tool_usage")))
    prefix = lead_prefix("loc-1", contact)
    cache().run(lambda r: r.hset(prefix + ":synced", mapping={"score": "33.3", "intent": "warm"}))
    cache().run(lambda r: r.zadd(prefix + ":handoffs", {"call-1": time.time()}))
    assert cache().run(lambda r: r.exists(prefix + ":sync-queued"))

    intake(ghl_event(ghl_body("contact_delete", locationId="loc-1", webhookId="d-1")))

    for suffix in (":lead", ":synced", ":sync-queued", ":handoffs"):
        assert not cache().run(lambda r, key=prefix + suffix: r.exists(key)), suffix
