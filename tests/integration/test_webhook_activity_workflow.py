"""POST /webhooks/activity (Standard Webhooks) and POST /webhooks/workflow (bearer token)."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from leadflow.signals import Signal
from tests.helpers import StubServer, load_event
from tests.integration.test_webhook_support import (
    WORKFLOW_TOKEN,
    Intake,
    activity_event,
    function_url_event,
    intake_fixture,  # noqa: F401  (the `intake` fixture)
    iso,
    lead,
    standard_headers,
    workflow_event,
)


def activity(**changes: Any) -> dict[str, Any]:
    event = load_event("activity_event")
    event["occurred_at"] = iso(time.time() - 60)
    event.update(changes)
    return event


# --- activity ------------------------------------------------------------------------------------


def test_a_signed_activity_event_is_recorded(intake: Intake) -> None:
    assert intake(activity_event(activity())) == (200, {"status": "accepted"})
    assert lead("contact-7").signals[Signal.PRICING_TOOL_USAGE].count == 1


def test_activity_without_a_signing_secret_is_unauthorized(intake: Intake, monkeypatch: pytest.MonkeyPatch) -> None:
    from leadflow.config import settings

    monkeypatch.delenv("WEBHOOK_SIGNING_SECRET")
    settings.cache_clear()
    assert intake(activity_event(activity()))[0] == 401


def test_activity_signed_with_another_secret_is_unauthorized(intake: Intake) -> None:
    body = json.dumps(activity()).encode()
    headers = standard_headers(body, "msg_1", secret="whsec_" + "QUJDREVGR0hJSktMTU5PUA==")
    assert intake(function_url_event("/webhooks/activity", body, headers))[0] == 401


def test_an_activity_timestamp_older_than_five_minutes_is_unauthorized(intake: Intake) -> None:
    body = json.dumps(activity()).encode()
    headers = standard_headers(body, "msg_old", at=time.time() - 301)
    assert intake(function_url_event("/webhooks/activity", body, headers))[0] == 401


def test_a_redelivered_webhook_id_is_a_duplicate(intake: Intake) -> None:
    assert intake(activity_event(activity(), msg_id="msg_same"))[1] == {"status": "accepted"}
    assert intake(activity_event(activity(), msg_id="msg_same"))[1] == {"status": "duplicate"}
    assert lead("contact-7").signals[Signal.PRICING_TOOL_USAGE].count == 1


def test_an_event_id_deduplicates_across_deliveries(intake: Intake) -> None:
    intake(activity_event(activity(id="evt-1"), msg_id="msg_a"))
    assert intake(activity_event(activity(id="evt-1"), msg_id="msg_b"))[1] == {"status": "duplicate"}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"signal": "open_house_rsvp"}, "signal"),
        ({"contact_id": None}, "contact_id"),
        ({"occurred_at": "yesterday"}, "occurred_at"),
    ],
)
def test_an_unusable_single_event_is_a_422_naming_the_field(intake: Intake, change: dict[str, Any], field: str) -> None:
    status, reply = intake(activity_event(activity(**change)))
    assert status == 422
    assert reply["message"].startswith(field)


def test_an_event_in_the_future_is_refused(intake: Intake) -> None:
    status, reply = intake(activity_event(activity(occurred_at=iso(time.time() + 3600))))
    assert status == 422
    assert "future" in reply["message"]


def test_occurred_at_defaults_to_the_time_received(intake: Intake) -> None:
    event = activity()
    del event["occurred_at"]
    before = time.time()
    intake(activity_event(event))
    assert lead("contact-7").signals[Signal.PRICING_TOOL_USAGE].last >= before - 1


def test_a_batch_records_the_usable_events_and_names_the_rest(intake: Intake) -> None:
    events = [activity(), activity(signal="listing_view"), activity(signal="bogus"), activity(contact_id="")]
    status, reply = intake(activity_event({"events": events}))
    assert status == 200
    assert reply["status"] == "accepted"
    assert [r["index"] for r in reply["rejected"]] == [2, 3]
    assert set(lead("contact-7").signals) == {Signal.PRICING_TOOL_USAGE, Signal.LISTING_VIEW}


def test_a_redelivered_batch_is_a_duplicate(intake: Intake) -> None:
    batch = {"events": [activity(), activity(signal="listing_view")]}
    intake(activity_event(batch, msg_id="msg_batch"))
    assert intake(activity_event(batch, msg_id="msg_batch"))[1] == {"status": "duplicate"}


def test_a_batch_of_more_than_100_events_is_refused(intake: Intake) -> None:
    assert intake(activity_event({"events": [activity()] * 101}))[0] == 422


def test_a_batch_with_no_usable_event_is_a_422_with_every_reason(intake: Intake) -> None:
    status, reply = intake(activity_event({"events": [activity(signal="x"), activity(contact_id=None)]}))
    assert status == 422
    assert len(reply["rejected"]) == 2


# --- activity: the lead's timezone ---------------------------------------------------------------
# A lead known only from the website tracker has no GHL contact event to bring its timezone: the
# first activity event asks GHL (contact, then location), and later ones that day do not ask again.


@pytest.fixture
def ghl_api(monkeypatch: pytest.MonkeyPatch) -> Iterator[StubServer]:
    """GHL's contact and location routes, with no timezone anywhere unless a test scripts one."""
    from leadflow.config import settings

    server = StubServer(
        {
            "GET /contacts/contact-7": [(200, {}, {"contact": {"id": "contact-7"}})],
            "GET /locations/loc-1": [(200, {}, {"location": {"id": "loc-1"}})],
        }
    )
    monkeypatch.setenv("GHL_API_KEY", "pit-test-token")
    monkeypatch.setenv("GHL_API_BASE_URL", server.url)
    monkeypatch.setenv("SEND_MODE", "dry-run")
    settings.cache_clear()
    yield server
    server.close()


def test_an_activity_only_lead_gets_its_timezone_from_ghl(intake: Intake, ghl_api: StubServer) -> None:
    contact = {"contact": {"id": "contact-7", "timezone": "America/Denver"}}
    ghl_api.replies["GET /contacts/contact-7"] = [(200, {}, contact)]
    assert intake(activity_event(activity()))[1] == {"status": "accepted"}
    assert lead("contact-7").profile.timezone == "America/Denver"
    [call] = ghl_api.calls("GET /contacts/contact-7")
    assert (call["headers"]["Authorization"], call["headers"]["Version"]) == ("Bearer pit-test-token", "2021-07-28")


def test_an_activity_only_lead_falls_back_to_its_locations_timezone(intake: Intake, ghl_api: StubServer) -> None:
    ghl_api.replies["GET /locations/loc-1"] = [(200, {}, {"location": {"id": "loc-1", "timezone": "America/Phoenix"}})]
    intake(activity_event(activity()))
    assert lead("contact-7").profile.timezone == "America/Phoenix"


def test_an_activity_only_lead_is_looked_up_once_a_day_not_on_every_event(intake: Intake, ghl_api: StubServer) -> None:
    from leadflow.lead_state import LeadStore

    for signal in ("pricing_tool_usage", "listing_view", "property_search"):
        assert intake(activity_event(activity(signal=signal)))[1] == {"status": "accepted"}
    assert len(ghl_api.calls("GET /contacts/contact-7")) == 1
    stored = lead("contact-7")
    assert stored.profile.timezone is None
    assert time.time() - stored.tz_checked < 60
    # A day later the lead is asked about again.
    LeadStore().set_fields("loc-1", "contact-7", {"g:tz_checked": repr(time.time() - 86_401)})
    intake(activity_event(activity(signal="website_visit")))
    assert len(ghl_api.calls("GET /contacts/contact-7")) == 2


def test_a_lead_with_a_timezone_is_not_looked_up(intake: Intake, ghl_api: StubServer) -> None:
    from leadflow.lead_state import LeadStore, encode_profile

    LeadStore().record("loc-1", "contact-7", fields=encode_profile({"timezone": "America/Chicago"}))
    intake(activity_event(activity()))
    assert ghl_api.calls("GET /contacts/contact-7") == []
    assert lead("contact-7").profile.timezone == "America/Chicago"


def test_when_a_lookup_is_due() -> None:
    from leadflow.intake.contacts import lookup_due
    from leadflow.lead import LeadState, Profile

    now = time.time()
    fresh, checked = LeadState(), LeadState(tz_checked=now - 3600)
    assert lookup_due(fresh, contact_event=False, now=now)
    assert not lookup_due(checked, contact_event=False, now=now)  # asked an hour ago
    assert lookup_due(checked, contact_event=True, now=now)  # GHL just sent the contact: ask
    assert lookup_due(LeadState(tz_checked=now - 86_400), contact_event=False, now=now)
    assert not lookup_due(LeadState(profile=Profile(timezone="America/Denver")), contact_event=True, now=now)


def test_concurrent_events_of_one_lead_make_one_lookup(intake: Intake, ghl_api: StubServer) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from leadflow.config import settings
    from leadflow.intake.contacts import fill_timezone
    from leadflow.intake.events import Action
    from leadflow.lead_state import LeadStore

    store = LeadStore()
    recorded = store.record("loc-1", "contact-7", signal=Signal.LISTING_VIEW)
    assert recorded is not None
    action = Action("activity", "loc-1", "contact-7", signal=Signal.LISTING_VIEW)
    states = [copy.deepcopy(recorded.state) for _ in range(8)]  # what each event's record returned
    now = time.time()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda state: fill_timezone(store, action, state, settings(), now), states))
    assert len(ghl_api.calls("GET /contacts/contact-7")) == 1


# --- workflow ------------------------------------------------------------------------------------


def test_a_workflow_webhook_with_the_token_records_its_custom_signal(intake: Intake) -> None:
    body = load_event("workflow_webhook")
    body["customData"]["occurred_at"] = iso(time.time() - 30)
    assert intake(workflow_event(body)) == (200, {"status": "accepted"})
    stored = lead("4CdAqZfOdbGXnDqTdKsv")
    assert stored.signals[Signal.AGENT_INQUIRY].count == 1
    assert (stored.profile.first_name, stored.profile.area_code, stored.profile.state) == ("Maria", "305", "FL")
    assert stored.profile.timezone == "America/New_York"


def test_a_workflow_webhook_without_the_token_is_unauthorized(intake: Intake) -> None:
    assert intake(workflow_event(load_event("workflow_webhook"), token=None))[0] == 401
    assert intake(workflow_event(load_event("workflow_webhook"), token=WORKFLOW_TOKEN + "x"))[0] == 401


def test_the_workflow_route_answers_401_when_no_token_is_configured(
    intake: Intake, monkeypatch: pytest.MonkeyPatch
) -> None:
    from leadflow.config import settings

    monkeypatch.delenv("WORKFLOW_WEBHOOK_TOKEN")
    settings.cache_clear()
    assert intake(workflow_event(load_event("workflow_webhook")))[0] == 401


def test_a_custom_webhook_may_carry_the_signal_at_the_top_level(intake: Intake) -> None:
    body = {"contactId": "c-42", "locationId": "loc-1", "signal": "property_search"}
    assert intake(workflow_event(body))[1] == {"status": "accepted"}
    assert lead("c-42").signals[Signal.PROPERTY_SEARCH].count == 1


def test_a_workflow_body_without_a_signal_updates_the_profile_only(intake: Intake) -> None:
    body = load_event("workflow_webhook")
    del body["customData"]
    assert intake(workflow_event(body))[1] == {"status": "accepted"}
    stored = lead("4CdAqZfOdbGXnDqTdKsv")
    assert stored.signals == {}
    assert stored.profile.first_name == "Maria"


def test_a_workflow_body_with_nothing_leadflow_uses_is_ignored(intake: Intake) -> None:
    assert intake(workflow_event({"workflow": {"id": "w1"}, "customData": {}}))[1] == {"status": "ignored"}


def test_a_workflow_signal_leadflow_does_not_know_is_a_422(intake: Intake) -> None:
    status, reply = intake(workflow_event({"contact_id": "c-1", "customData": {"signal": "open_house"}}))
    assert status == 422
    assert reply["message"].startswith("signal")


def test_the_same_workflow_body_twice_within_five_minutes_is_a_duplicate(intake: Intake) -> None:
    body = {"contact_id": "c-9", "location": {"id": "loc-1"}, "customData": {"signal": "website_visit"}}
    assert intake(workflow_event(body))[1] == {"status": "accepted"}
    assert intake(workflow_event(body))[1] == {"status": "duplicate"}
