"""The monitor against a real redis-server and moto SQS."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Queues
from tests.helpers import HOT, URGENT, load_app, seed_lead, zone_at

# Urgent without asking for an agent: a text is recommended (an urgent agent inquiry is a call, a handoff).
URGENT_SMS = {signal: n for signal, n in URGENT.items() if signal != "agent_inquiry"}


@pytest.fixture
def monitor(redis_url: str, queues: Queues) -> Any:
    return load_app("monitor")


def scheduled_event() -> dict[str, Any]:
    from tests.helpers import load_event

    return load_event("eventbridge_schedule")


def queued(queues: Queues) -> list[dict[str, Any]]:
    return queues.jobs()


def test_a_hot_lead_in_its_window_gets_one_job_with_the_contract_fields(
    monitor: Any, queues: Queues, lambda_context: Any
) -> None:
    seed_lead("hot-1", HOT, profile={"timezone": zone_at(12), "first_name": "Ana"})
    report = monitor.lambda_handler(scheduled_event(), lambda_context)
    jobs = queued(queues)
    assert report["queued"] == 1
    assert len(jobs) == 1
    job = jobs[0]
    assert {"job_id", "lead_id", "location_id", "channel", "source", "intent_level", "likelihood_score",
            "top_signals", "created_at"} <= set(job)  # fmt: skip
    assert (job["lead_id"], job["location_id"], job["source"], job["channel"]) == ("hot-1", "loc-1", "monitor", "sms")
    assert job["top_signals"][0] == "pricing_tool_usage"
    assert job["intent_level"] in {"hot", "urgent"}


def test_a_second_run_queues_nothing_new(monitor: Any, queues: Queues, lambda_context: Any) -> None:
    seed_lead("hot-1", HOT, profile={"timezone": zone_at(12)})
    seed_lead("hot-2", URGENT, profile={"timezone": zone_at(12)})
    first = monitor.lambda_handler(scheduled_event(), lambda_context)
    second = monitor.lambda_handler(scheduled_event(), lambda_context)
    assert first["queued"] == 2
    assert second["queued"] == 0
    assert second["skipped"] == {"pending": 2}
    assert len(queued(queues)) == 2


def test_leads_are_queued_highest_intent_first(monitor: Any, queues: Queues, lambda_context: Any) -> None:
    seed_lead("hot", HOT, profile={"timezone": zone_at(12)})
    seed_lead("urgent", URGENT, profile={"timezone": zone_at(12)})
    monitor.lambda_handler(scheduled_event(), lambda_context)
    jobs = queued(queues)
    assert [job["lead_id"] for job in jobs] == ["urgent", "hot"]


def test_cold_opted_out_paused_and_sleeping_leads_get_nothing(
    monitor: Any, queues: Queues, lambda_context: Any
) -> None:
    from leadflow.lead_state import LeadStore

    seed_lead("cold", {"website_visit": 1}, profile={"timezone": zone_at(12)})
    seed_lead("stop", URGENT, profile={"timezone": zone_at(12), "dnd": True})
    seed_lead("paused", URGENT, profile={"timezone": zone_at(12)})
    LeadStore().set_fields("loc-1", "paused", {"g:paused_until": "inf"})
    seed_lead("asleep", URGENT_SMS, profile={"timezone": zone_at(4)})
    report = monitor.lambda_handler(scheduled_event(), lambda_context)
    assert report["queued"] == 0
    assert report["skipped"] == {"opted_out": 1, "paused": 1, "quiet_hours": 1}
    assert queued(queues) == []


def test_a_hot_lead_outside_its_contact_window_waits_but_an_urgent_one_does_not(
    monitor: Any, queues: Queues, lambda_context: Any
) -> None:
    # The leads engage at 2 pm local (their window is 14-16); the monitor runs at 10 am the next day.
    import time
    from datetime import UTC, datetime

    from leadflow.followup import run_monitor

    later = time.time() + 20 * 3600
    zone = zone_at(10, later)
    seed_lead("hot", HOT, profile={"timezone": zone}, hours_ago=0)
    seed_lead("urgent", URGENT, profile={"timezone": zone}, hours_ago=0)

    report = run_monitor(now=datetime.fromtimestamp(later, UTC))
    assert report.skipped.get("outside_window") == 1
    assert [job["lead_id"] for job in queues.jobs()] == ["urgent"]


def test_monitoring_switched_off_queues_nothing(monitor: Any, queues: Queues, lambda_context: Any) -> None:
    from leadflow.followup_store import FollowupStore

    seed_lead("hot-1", URGENT, profile={"timezone": zone_at(12)})
    FollowupStore().set_monitoring(False)
    report = monitor.lambda_handler(scheduled_event(), lambda_context)
    assert report["enabled"] is False
    assert queued(queues) == []


def test_monitoring_switched_off_during_a_run_queues_nothing_more(
    monitor: Any, queues: Queues, lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run reads the switch again right before it queues: one that began before a person switched
    the monitor off (to hold it while a lead's events arrive, say) queues nothing after that."""
    from leadflow.followup_store import FollowupStore
    from leadflow.lead_state import LeadStore

    seed_lead("hot-1", HOT, profile={"timezone": zone_at(12)})
    load_many = LeadStore.load_many

    def switched_off_while_reading(self: LeadStore, *args: Any) -> Any:
        FollowupStore().set_monitoring(False)
        return load_many(self, *args)

    monkeypatch.setattr(LeadStore, "load_many", switched_off_while_reading)
    report = monitor.lambda_handler(scheduled_event(), lambda_context)
    assert (report["enabled"], report["queued"]) == (False, 0)
    assert queued(queues) == []


def test_every_location_is_monitored(monitor: Any, queues: Queues, lambda_context: Any) -> None:
    seed_lead("a", URGENT, location_id="loc-1", profile={"timezone": zone_at(12)})
    seed_lead("b", URGENT, location_id="loc-2", profile={"timezone": zone_at(12)})
    report = monitor.lambda_handler(scheduled_event(), lambda_context)
    assert report["locations"] == 2
    assert sorted(job["location_id"] for job in queued(queues)) == ["loc-1", "loc-2"]


def test_jobs_refused_by_sqs_are_released_for_the_next_run(
    monitor: Any, queues: Queues, lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from leadflow import jobs

    seed_lead("hot-1", URGENT, profile={"timezone": zone_at(12)})
    real_send = jobs._send_batch
    monkeypatch.setattr(jobs, "_send_batch", lambda url, batch: list(batch))
    assert monitor.lambda_handler(scheduled_event(), lambda_context)["queued"] == 0
    monkeypatch.setattr(jobs, "_send_batch", real_send)
    assert monitor.lambda_handler(scheduled_event(), lambda_context)["queued"] == 1


def test_a_lead_the_fast_path_served_gets_no_second_job_from_the_monitor_in_that_slot(
    monitor: Any, queues: Queues, lambda_context: Any
) -> None:
    import time

    from leadflow.followup import queue_fast_path
    from leadflow.followup_store import FollowupStore

    recorded = seed_lead("urgent", URGENT, profile={"timezone": zone_at(12)})
    job_id = queue_fast_path("loc-1", "urgent", recorded.state, recorded.likelihood, None, time.time())
    assert job_id is not None
    FollowupStore().release("loc-1", "urgent", job_id)  # as the send function does once it has sent
    report = monitor.lambda_handler(scheduled_event(), lambda_context)
    assert report["queued"] == 0
    assert report["skipped"] == {"already_queued": 1}
    assert [job["source"] for job in queues.jobs()] == ["fast_path"]


def test_a_lead_at_its_daily_cap_gets_no_job(monitor: Any, queues: Queues, lambda_context: Any) -> None:
    import time

    from leadflow.followup_store import FollowupStore

    seed_lead("capped", URGENT_SMS, profile={"timezone": zone_at(12)})
    for i in range(3):
        assert FollowupStore().reserve("loc-1", "capped", f"earlier-{i}", time.time() - 60, time.time() - 3600, 3, 0)
    report = monitor.lambda_handler(scheduled_event(), lambda_context)
    assert report["queued"] == 0
    assert report["skipped"] == {"daily_cap": 1}
