"""The score function over real HTTP API v2 events, against the tests' own redis-server."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.helpers import http_event, load_app, seed_example

NOW = datetime.now(UTC)


@pytest.fixture
def score_app(redis_url: str) -> Any:
    return load_app("score")


def call(app: Any, context: Any, *args: Any, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    reply = app.lambda_handler(http_event(*args, **kwargs), context)
    return reply["statusCode"], json.loads(reply["body"])


def call_lead(app: Any, context: Any, method: str, lead_id: str, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    """A request to /leads/{lead_id}/score."""
    path = f"/leads/{lead_id}/score"
    return call(app, context, method, path, "/leads/{lead_id}/score", path_params={"lead_id": lead_id}, **kwargs)


def record(lead_id: str, signal: str, hours_ago: float, location: str = "loc-1") -> None:
    from leadflow.lead_state import LeadStore
    from leadflow.signals import Signal

    at = (NOW - timedelta(hours=hours_ago)).timestamp()
    LeadStore().record(location, lead_id, signal=Signal(signal), at=at)


def test_post_with_activity_data_scores_the_seed_example_hot(score_app: Any, lambda_context: Any) -> None:
    body = {"activity_data": seed_example(NOW)}
    status, reply = call_lead(score_app, lambda_context, "POST", "x", body=body)
    assert status == 200
    assert reply["intent_level"] == "hot"
    assert reply["key_signals"][0]["type"] == "pricing_tool_usage"
    assert set(reply) == {
        "lead_id", "likelihood_score", "intent_level", "optimal_contact_window", "recommended_channel",
        "recommended_message", "confidence", "key_signals", "timezone", "scored_at",
    }  # fmt: skip


def test_malformed_activity_item_is_422_naming_the_field(score_app: Any, lambda_context: Any) -> None:
    body = {"activity_data": {"pricing_tool_uses": [{"timestamp": "yesterday"}]}}
    status, reply = call_lead(score_app, lambda_context, "POST", "x", body=body)
    assert status == 422
    assert "activity_data.pricing_tool_uses[0].timestamp" in reply["message"]


def test_malformed_json_is_400(score_app: Any, lambda_context: Any) -> None:
    status, reply = call_lead(score_app, lambda_context, "POST", "x", raw_body="{not json")
    assert status == 400
    assert "message" in reply


def test_unknown_lead_is_404(score_app: Any, lambda_context: Any) -> None:
    status, reply = call(
        score_app,
        lambda_context,
        "GET",
        "/leads/nobody/score",
        "/leads/{lead_id}/score",
        path_params={"lead_id": "nobody"},
    )
    assert status == 404
    assert reply == {"message": "unknown lead: nobody"}


def test_stored_lead_is_scored_now_by_get_and_post(score_app: Any, lambda_context: Any) -> None:
    record("lead-1", "pricing_tool_usage", 1)
    record("lead-1", "agent_inquiry", 2)
    for method in ("GET", "POST"):
        status, reply = call_lead(score_app, lambda_context, method, "lead-1")
        assert status == 200
        assert reply["lead_id"] == "lead-1"
        assert {k["type"] for k in reply["key_signals"]} == {"pricing_tool_usage", "agent_inquiry"}


def test_high_intent_lists_leads_highest_first(score_app: Any, lambda_context: Any) -> None:
    for signal in ("pricing_tool_usage", "agent_inquiry", "neighborhood_research", "market_report_engagement"):
        record("hot-1", signal, 1)
    for signal in ("pricing_tool_usage", "agent_inquiry", "neighborhood_research"):
        record("hot-2", signal, 3)
    record("cold-1", "website_visit", 2)
    status, reply = call(
        score_app, lambda_context, "GET", "/leads/high-intent", "/leads/high-intent", query={"min_likelihood": "50"}
    )
    assert status == 200
    assert reply["lead_ids"] == ["hot-1", "hot-2"]
    assert reply["leads"][0]["likelihood_score"] >= reply["leads"][1]["likelihood_score"] >= 50
    assert {lead["intent_level"] for lead in reply["leads"]} <= {"hot", "urgent"}


def test_high_intent_rejects_out_of_range_limit_with_422(score_app: Any, lambda_context: Any) -> None:
    status, reply = call(
        score_app, lambda_context, "GET", "/leads/high-intent", "/leads/high-intent", query={"limit": "0"}
    )
    assert status == 422
    assert reply["message"].startswith("limit")


def test_location_query_selects_another_location(score_app: Any, lambda_context: Any) -> None:
    record("lead-9", "pricing_tool_usage", 1, location="loc-2")
    path = "/leads/lead-9/score"
    status, _ = call(
        score_app, lambda_context, "GET", path, "/leads/{lead_id}/score", path_params={"lead_id": "lead-9"}
    )
    assert status == 404
    status, reply = call_lead(score_app, lambda_context, "GET", "lead-9", query={"location_id": "loc-2"})
    assert status == 200
    assert reply["key_signals"][0]["type"] == "pricing_tool_usage"
