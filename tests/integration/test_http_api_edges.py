"""HTTP API edges that fuzzing (tests/e2e/test_schemathesis.py) found, each pinned here at the handler."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from tests.conftest import Queues
from tests.helpers import http_event, load_app


@pytest.fixture
def score(redis_url: str) -> Any:
    return load_app("score")


@pytest.fixture
def send(redis_url: str, queues: Queues) -> Any:
    return load_app("send")


def call(app: Any, context: Any, event: dict[str, Any]) -> tuple[int, str, dict[str, Any]]:
    reply = app.lambda_handler(event, context)
    return reply["statusCode"], reply["headers"]["Content-Type"], json.loads(reply["body"])


def binary_body(event: dict[str, Any], raw: bytes) -> dict[str, Any]:
    """The body as API Gateway hands over bytes it will not pass as text: base64, isBase64Encoded."""
    event["body"] = base64.b64encode(raw).decode()
    event["isBase64Encoded"] = True
    event["headers"]["content-type"] = "application/json"
    return event


@pytest.mark.parametrize(
    ("function", "method", "path", "route"),
    [
        ("score", "POST", "/leads/x/score", "/leads/{lead_id}/score"),
        ("send", "POST", "/leads/x/messages", "/leads/{lead_id}/messages"),
        ("send", "PUT", "/followups/monitoring", "/followups/monitoring"),
    ],
)
def test_a_body_that_is_not_utf8_is_400_not_a_crash(
    request: pytest.FixtureRequest, lambda_context: Any, function: str, method: str, path: str, route: str
) -> None:
    app = request.getfixturevalue(function)
    params = {"lead_id": "x"} if "{lead_id}" in route else None
    event = binary_body(http_event(method, path, route, path_params=params), b"\xff\x7f\x04\x0b2")

    assert call(app, lambda_context, event) == (
        400,
        "application/json",
        {"message": "body is not valid JSON (not UTF-8)"},
    )


def test_a_utf8_body_sent_as_base64_is_read_as_usual(send: Any, lambda_context: Any) -> None:
    event = binary_body(http_event("PUT", "/followups/monitoring", "/followups/monitoring"), b'{"enabled": true}')

    assert call(send, lambda_context, event) == (200, "application/json", {"is_running": True})


@pytest.mark.parametrize("lead_id", ["a`b", "a\\b", "a\x0bb", 'say "hi"', "a#b", "a?b"])
def test_any_lead_id_reaches_its_route(score: Any, send: Any, lambda_context: Any, lead_id: str) -> None:
    """API Gateway's {lead_id} is any one path segment: no lead id answers 404 "no such route"."""
    history = http_event(
        "GET", f"/leads/{lead_id}/messages", "/leads/{lead_id}/messages", path_params={"lead_id": lead_id}
    )
    stored = http_event("GET", f"/leads/{lead_id}/score", "/leads/{lead_id}/score", path_params={"lead_id": lead_id})

    assert call(send, lambda_context, history) == (200, "application/json", {"messages": []})
    assert call(score, lambda_context, stored) == (404, "application/json", {"message": f"unknown lead: {lead_id}"})


def test_a_path_with_more_segments_is_still_no_route(send: Any, lambda_context: Any) -> None:
    event = http_event("GET", "/leads/a/b/messages", "/leads/{lead_id}/messages")

    assert call(send, lambda_context, event) == (404, "application/json", {"message": "no such route"})
