"""Agent handoff (ARCHITECTURE.md, "Contract: GHL both ways", Agent handoff): call jobs through the
send handler's real SQS events against a GHL stand-in, the monitor and the webhook's fast path
queueing them, and the rules a task obeys (handoff.py's docstring says which, and why)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.conftest import Queues
from tests.helpers import CLOSE, HOT, URGENT, StubServer, load_app, seed_lead, zone_at
from tests.integration.test_send_function import deliver, history, job, messages_api, outbox
from tests.integration.test_webhook_support import Intake, ghl_body, ghl_event, intake_fixture  # noqa: F401

TASKS = "POST /contacts/maria/tasks"
SMS = "POST /conversations/messages"
MARIA = {"timezone": zone_at(12), "first_name": "Maria", "assigned_to": "user-7"}


def created_task(title: str = "Call Maria") -> tuple[int, dict[str, str], Any]:
    """GHL's reply to a created task (apps/contacts.json, TaskByIsSuccessfulResponseDto)."""
    return 201, {}, {"task": {"id": "task-1", "title": title, "contactId": "maria", "completed": False}}


@pytest.fixture
def tasks(ghl: StubServer) -> StubServer:
    ghl.replies[TASKS] = [created_task()]
    return ghl


def call_job(job_id: str = "call-1", lead_id: str = "maria", **fields: Any) -> str:
    return job(lead_id, job_id, channel="call", intent_level="urgent", **fields)


def score_now(lead_id: str = "maria") -> Any:
    from leadflow.lead_state import LeadStore
    from leadflow.scoring import score_lead

    state = LeadStore().load("loc-1", lead_id)
    return score_lead(lead_id, state, datetime.now(UTC), (8, 21), "America/New_York")


def when(iso: str) -> datetime:
    return datetime.fromisoformat(iso.replace("Z", "+00:00"))


def test_a_call_job_creates_one_task_for_the_assigned_agent_per_day(
    send: Any, tasks: StubServer, lambda_context: Any
) -> None:
    seed_lead("maria", URGENT, profile=MARIA)
    before = datetime.now(UTC)
    assert deliver(send, lambda_context, call_job("call-1")) == {"batchItemFailures": []}
    deliver(send, lambda_context, call_job("call-2"))  # a second trigger the same day

    [task] = tasks.calls(TASKS)
    score = score_now()
    body = task["json"]
    assert body["title"] == f"Call Maria: urgent, {score.likelihood_score}"
    assert body["assignedTo"] == "user-7"
    assert body["completed"] is False
    due = when(body["dueDate"])
    assert before + timedelta(minutes=15) - timedelta(seconds=2) <= due <= datetime.now(UTC) + timedelta(minutes=15)
    assert body["body"].splitlines()[1].startswith("Why: pricing tool x3, ")
    assert body["body"].splitlines()[2].startswith("Last activity: ")
    assert task["headers"]["Version"] == "2021-07-28"
    assert tasks.calls(SMS) == []
    assert [(e["job_id"], e["channel"], e["status"], e.get("reason")) for e in history("maria")] == [
        ("call-2", "call", "skipped", "handed_off_today"),
        ("call-1", "call", "handed_off", None),
    ]
    assert history("maria")[1]["body"] == body["title"]


def test_a_task_without_an_assigned_agent_has_no_assigned_to(send: Any, tasks: StubServer, lambda_context: Any) -> None:
    seed_lead("maria", URGENT, profile={"timezone": zone_at(12), "first_name": "Maria"})
    deliver(send, lambda_context, call_job())
    assert "assignedTo" not in tasks.calls(TASKS)[0]["json"]


def test_an_urgent_lead_whose_channel_is_call_gets_a_task_never_an_sms(
    send: Any, tasks: StubServer, queues: Queues, lambda_context: Any
) -> None:
    monitor = load_app("monitor")
    seed_lead("maria", URGENT, profile=MARIA)
    assert score_now().recommended_channel == "call"

    monitor.lambda_handler({"source": "aws.events"}, lambda_context)
    monitor.lambda_handler({"source": "aws.events"}, lambda_context)  # the same day: nothing new
    queued = queues.jobs()
    assert [(job["channel"], job["source"]) for job in queued] == [("call", "monitor")]
    deliver(send, lambda_context, *map(json.dumps, queued))

    assert len(tasks.calls(TASKS)) == 1
    assert tasks.calls(SMS) == []
    assert [e["status"] for e in history("maria")] == ["handed_off"]


def test_an_on_demand_message_for_a_call_lead_is_a_message(send: Any, queues: Queues, lambda_context: Any) -> None:
    # a person asked leadflow to send a message now: a text, not a task for themselves
    seed_lead("maria", URGENT, profile=MARIA)
    status, body = messages_api(send, lambda_context, "POST", "maria")
    assert (status, body["status"]) == (202, "queued")
    assert [job["channel"] for job in queues.jobs()] == ["sms"]


def test_a_task_post_read_then_closed_is_never_repeated(send: Any, tasks: StubServer, lambda_context: Any) -> None:
    # Given GHL reads the POST and closes the connection: the task may exist
    tasks.replies[TASKS] = [(CLOSE, {}, None)]
    seed_lead("maria", URGENT, profile=MARIA)
    # When SQS delivers the job as often as its redrive policy allows, and another trigger comes the same day
    for receive_count in range(1, 6):
        assert deliver(send, lambda_context, call_job(), receive_count=receive_count) == {"batchItemFailures": []}
    tasks.replies[TASKS] = [created_task()]
    deliver(send, lambda_context, call_job("call-2"))
    # Then GHL saw one POST; the job failed with its outcome unknown, and it holds the day's handoff
    assert len(tasks.calls(TASKS)) == 1
    assert [(e["job_id"], e["status"], e.get("reason")) for e in history("maria")] == [
        ("call-2", "skipped", "handed_off_today"),
        ("call-1", "failed", "outcome_unknown"),
    ]


@pytest.mark.parametrize(
    ("profile", "paused_until", "reason"),
    [
        ({"dnd_channels": ["call"]}, None, "opted_out"),  # GHL's DND on calls
        ({"dnd": True}, None, "opted_out"),  # GHL's DND on everything
        ({"opted_out": True}, None, "opted_out"),  # a STOP reply
        ({}, "inf", "paused"),  # an appointment booked, the opportunity won or lost
        ({"dnd_channels": ["sms", "email"]}, None, None),  # no texts, no emails: a call is fine
        ({}, "soon", None),  # a reply paused automated messages: the agent takes over
    ],
)
def test_the_rules_a_handoff_task_obeys(
    send: Any, tasks: StubServer, lambda_context: Any, profile: dict[str, Any], paused_until: str | None, reason: str
) -> None:
    from leadflow.lead_state import LeadStore

    seed_lead("maria", URGENT, profile=MARIA | profile)
    if paused_until:
        until = "inf" if paused_until == "inf" else repr(time.time() + 3600)
        LeadStore().set_fields("loc-1", "maria", {"g:paused_until": until})
    deliver(send, lambda_context, call_job())
    [entry] = history("maria")
    if reason:
        assert (entry["status"], entry["reason"]) == ("skipped", reason)
        assert tasks.calls(TASKS) == []
    else:
        assert entry["status"] == "handed_off"
        assert len(tasks.calls(TASKS)) == 1


def test_at_night_the_task_is_created_due_when_the_leads_hours_begin(
    send: Any, tasks: StubServer, lambda_context: Any
) -> None:
    zone = zone_at(23)
    seed_lead("maria", URGENT, profile=MARIA | {"timezone": zone})
    deliver(send, lambda_context, call_job())
    local = datetime.now(ZoneInfo(zone))
    morning = local.replace(hour=8, minute=0, second=0, microsecond=0)
    morning += timedelta(days=1) if local.hour >= 8 else timedelta()
    assert when(tasks.calls(TASKS)[0]["json"]["dueDate"]) == morning


def test_a_stop_recorded_while_the_task_is_prepared_stops_it(
    send: Any, tasks: StubServer, lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from leadflow import handoff
    from leadflow.lead_state import LeadStore, encode_profile

    seed_lead("maria", URGENT, profile=MARIA)
    prepare = handoff.task

    def stop_meanwhile(*args: Any) -> dict[str, Any]:
        LeadStore().record("loc-1", "maria", fields=encode_profile({"opted_out": True}))  # an inbound STOP
        return prepare(*args)

    monkeypatch.setattr(handoff, "task", stop_meanwhile)
    deliver(send, lambda_context, call_job())
    assert tasks.calls(TASKS) == []
    assert [(e["status"], e["reason"]) for e in history("maria")] == [("skipped", "opted_out")]


def test_in_dry_run_the_task_goes_to_the_outbox(send: Any, lambda_context: Any) -> None:
    seed_lead("maria", URGENT, profile=MARIA)
    deliver(send, lambda_context, call_job())
    [entry] = outbox()
    assert (entry["kind"], entry["channel"], entry["source"]) == ("handoff", "call", "monitor")
    assert entry["task"]["title"].startswith("Call Maria: urgent, ")
    assert entry["task"]["assignedTo"] == "user-7"
    assert [e["status"] for e in history("maria")] == ["handed_off"]


def test_once_handed_off_the_lead_gets_no_automated_text(send: Any, lambda_context: Any) -> None:
    seed_lead("maria", URGENT, profile=MARIA)
    deliver(send, lambda_context, call_job())
    deliver(send, lambda_context, job(lead_id="maria", job_id="text-after"))  # the monitor's next slot
    assert [(e["status"], e.get("reason")) for e in history("maria")] == [("skipped", "paused"), ("handed_off", None)]


# --- the webhook: who asks for an agent, and who the agent is ----------------------------------


def test_a_hot_lead_who_replies_gets_a_handoff_job_not_a_text(intake: Intake) -> None:
    seed_lead("maria", HOT, profile=MARIA)
    reply = ghl_body("inbound_message_sms", locationId="loc-1", contactId="maria", body="Yes, call me")
    assert intake(ghl_event(reply))[1] == {"status": "accepted"}
    assert [(job["channel"], job["source"]) for job in intake.jobs()] == [("call", "fast_path")]


def test_a_hot_lead_opted_out_of_calls_who_asks_for_an_agent_gets_a_text_instead(intake: Intake) -> None:
    from tests.integration.test_webhook_support import activity_event

    seed_lead("maria", HOT, profile=MARIA | {"dnd_channels": ["call"]})
    event = {"type": "activity", "location_id": "loc-1", "contact_id": "maria", "signal": "agent_inquiry"}
    assert intake(activity_event(event))[1] == {"status": "accepted"}
    assert [(job["channel"], job["source"]) for job in intake.jobs()] == [("sms", "fast_path")]


def test_the_contacts_assigned_user_is_kept_from_contact_events(intake: Intake) -> None:
    from tests.integration.test_webhook_support import lead

    contact = "nmFmQEsNgz6AVpgLVUJ0"
    intake(ghl_event(ghl_body("contact_create", locationId="loc-1", webhookId="c-1")))
    assert lead(contact).profile.assigned_to == "nmFmQEsNgz6AVpgLVUJ0"  # the documented example's user
    intake(ghl_event(ghl_body("contact_update", locationId="loc-1", webhookId="c-2", assignedTo="user-9")))
    assert lead(contact).profile.assigned_to == "user-9"
