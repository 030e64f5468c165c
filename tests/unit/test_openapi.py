"""scripts/openapi.py: the HTTP API's OpenAPI document, generated from the functions' resolvers."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from types import ModuleType
from typing import Any

import pytest

from tests.helpers import ROOT


def openapi_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("openapi_script", ROOT / "scripts" / "openapi.py")
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return openapi_script().document()


def parameters(operation: dict[str, Any]) -> dict[str, str]:
    return {p["name"]: p["in"] for p in operation.get("parameters", [])}


def test_the_document_is_openapi_3(document: dict[str, Any]) -> None:
    assert (document["openapi"].startswith("3."), document["info"]["title"]) == (True, "leadflow HTTP API")


def test_it_lists_every_score_route(document: dict[str, Any]) -> None:
    routes = {(path, method) for path, operations in document["paths"].items() for method in operations}
    assert {
        ("/leads/{lead_id}/score", "post"),
        ("/leads/{lead_id}/score", "get"),
        ("/leads/high-intent", "get"),
    } <= routes


def test_score_routes_take_the_lead_id_in_the_path_and_a_location_query(document: dict[str, Any]) -> None:
    operations = document["paths"]["/leads/{lead_id}/score"]
    assert {method: parameters(op) for method, op in operations.items()} == {
        "get": {"lead_id": "path", "location_id": "query"},
        "post": {"lead_id": "path", "location_id": "query"},
    }


def test_post_score_takes_an_optional_body(document: dict[str, Any]) -> None:
    body = document["paths"]["/leads/{lead_id}/score"]["post"]["requestBody"]
    assert (body.get("required", False), "application/json" in body["content"]) == (False, True)


def test_high_intent_takes_its_threshold_limit_and_location(document: dict[str, Any]) -> None:
    params = document["paths"]["/leads/high-intent"]["get"]["parameters"]
    assert {p["name"]: (p["in"], p.get("required", False)) for p in params} == {
        "min_likelihood": ("query", False),
        "limit": ("query", False),
        "location_id": ("query", False),
    }


def test_high_intent_limit_is_bounded_as_the_route_validates(document: dict[str, Any]) -> None:
    [limit] = [p for p in document["paths"]["/leads/high-intent"]["get"]["parameters"] if p["name"] == "limit"]
    assert (limit["schema"]["minimum"], limit["schema"]["maximum"]) == (1, 500)


def test_a_function_without_a_resolver_is_left_out(monkeypatch: pytest.MonkeyPatch) -> None:
    script = openapi_script()
    real_load = script.load_app
    monkeypatch.setattr(script, "load_app", lambda name: ModuleType(name) if name == "send" else real_load(name))
    paths = script.document(("score", "send"))["paths"]
    assert set(paths) == {"/leads/{lead_id}/score", "/leads/high-intent"}


def test_the_script_prints_the_document_as_json() -> None:
    run = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "openapi.py")], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert "/leads/{lead_id}/score" in json.loads(run.stdout)["paths"]


def operations(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f"{m.upper()} {path}": op for path, ops in document["paths"].items() for m, op in ops.items()}


def schema_of(document: dict[str, Any], response: dict[str, Any]) -> str:
    return str(response["content"]["application/json"]["schema"]["$ref"]).rsplit("/", 1)[-1]


def test_every_route_is_behind_the_jwt_authorizer_and_documents_its_401(document: dict[str, Any]) -> None:
    assert document["security"] == [{"jwt": []}]
    assert document["components"]["securitySchemes"]["jwt"] | {"description": ""} == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "",
    }
    assert {
        name: schema_of(document, op["responses"]["401"]) for name, op in operations(document).items()
    } == dict.fromkeys(operations(document), "ErrorReply")


def test_every_error_is_documented_as_a_message(document: dict[str, Any]) -> None:
    """Not Powertools' HTTPValidationError ({"detail": [...]}): the error handlers reply {"message": ...}."""
    errors = {
        (name, status): schema_of(document, response)
        for name, op in operations(document).items()
        for status, response in op["responses"].items()
        if int(status) >= 400
    }
    assert set(errors.values()) == {"ErrorReply", "BlockedReply"}
    assert {key for key, schema in errors.items() if schema == "BlockedReply"} == {
        ("POST /leads/{lead_id}/messages", "409")
    }
    assert document["components"]["schemas"]["ErrorReply"]["required"] == ["message"]
    assert not {"HTTPValidationError", "ValidationError", "ResponseValidationError"} & set(
        document["components"]["schemas"]
    )


def test_each_route_documents_the_contracts_statuses(document: dict[str, Any]) -> None:
    assert {name: sorted(op["responses"]) for name, op in operations(document).items()} == {
        "POST /leads/{lead_id}/score": ["200", "400", "401", "404", "422", "503"],
        "GET /leads/{lead_id}/score": ["200", "401", "404", "422", "503"],
        "GET /leads/high-intent": ["200", "401", "422", "503"],
        "POST /leads/{lead_id}/messages": ["202", "400", "401", "404", "409", "422", "503"],
        "GET /leads/{lead_id}/messages": ["200", "401", "422", "503"],
        "GET /followups/stats": ["200", "401", "422", "503"],
        "PUT /followups/monitoring": ["200", "400", "401", "422", "503"],
    }


def test_success_replies_have_the_contracts_shapes(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    replies = {
        name: schema_of(document, op["responses"].get("200") or op["responses"]["202"])
        for name, op in operations(document).items()
    }
    assert replies == {
        "POST /leads/{lead_id}/score": "PredictiveSellScore",
        "GET /leads/{lead_id}/score": "PredictiveSellScore",
        "GET /leads/high-intent": "HighIntentList",
        "POST /leads/{lead_id}/messages": "Queued",
        "GET /leads/{lead_id}/messages": "History",
        "GET /followups/stats": "Stats",
        "PUT /followups/monitoring": "Monitoring",
    }
    assert set(schemas["PredictiveSellScore"]["required"]) == {
        "lead_id", "likelihood_score", "intent_level", "optimal_contact_window", "recommended_channel",
        "recommended_message", "confidence", "key_signals", "timezone", "scored_at",
    }  # fmt: skip
    assert schemas["BlockedReply"]["properties"]["reason"]["enum"] == [
        "not_installed", "opted_out", "paused", "daily_cap", "quiet_hours", "rate_limited",
    ]  # fmt: skip
    assert schemas["HistoryEntry"]["properties"]["status"]["enum"] == ["sent", "skipped", "failed", "handed_off"]
    assert set(schemas["Stats"]["required"]) >= {"total_tasks", "pending", "sent", "skipped", "failed", "is_running"}


def test_activity_data_documents_the_seeds_keys_and_promises_no_more_than_is_checked(
    document: dict[str, Any],
) -> None:
    [described, null] = document["components"]["schemas"]["ScoreRequest"]["properties"]["activity_data"]["anyOf"]
    keys = described["properties"]
    assert null == {"type": "null"}
    assert set(keys) == {
        "pricing_tool_uses", "agent_inquiries", "neighborhood_research", "market_report_engagement",
        "property_searches", "listing_views", "email_interactions", "website_visits", "sms_responses",
        "virtual_tour_views",
    }  # fmt: skip
    assert "additionalProperties" not in described  # unknown keys are ignored, not refused
    # Found by fuzzing: an `opened` that is not a boolean is accepted (only `false` means not opened).
    assert "type" not in keys["email_interactions"]["items"]["properties"]["opened"]
