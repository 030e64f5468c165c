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
