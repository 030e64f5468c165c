"""Any body, header or path thrown at the webhook handler gives a 4xx or a 200, never a 5xx."""

from __future__ import annotations

import base64
import json
from typing import Any
from unittest.mock import patch

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.integration.test_webhook_support import (
    WORKFLOW_TOKEN,
    Intake,
    function_url_event,
    intake_fixture,  # noqa: F401  (the `intake` fixture)
    sign_ed25519,
    standard_headers,
)

PATHS = st.sampled_from(["/webhooks/ghl", "/webhooks/activity", "/webhooks/workflow", "/", "/webhooks/ghl/", "/x"])
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=20,
)
KEYS = st.sampled_from(
    [
        "type",
        "locationId",
        "id",
        "contactId",
        "contact_id",
        "signal",
        "timestamp",
        "webhookId",
        "events",
        "body",
        "messageType",
        "dnd",
        "dndSettings",
        "appointment",
        "status",
        "occurred_at",
        "customData",
        "location",
        "phone",
    ]
)
SHAPED = st.dictionaries(
    KEYS, JSON | st.sampled_from(["InboundMessage", "ContactCreate", "STOP", "pricing_tool_usage"])
)
HEADERS = st.dictionaries(
    st.sampled_from(
        [
            "x-ghl-signature",
            "x-wh-signature",
            "webhook-id",
            "webhook-timestamp",
            "webhook-signature",
            "authorization",
            "content-type",
            "X-GHL-Signature",
        ]
    ),
    st.text(max_size=60),
    max_size=5,
)


def signed(path: str, body: bytes, headers: dict[str, str], mode: int) -> dict[str, str]:
    """Sometimes sign properly, so the fuzz reaches the parsers and not only the signature check."""
    if mode == 1 and path.startswith("/webhooks/ghl"):
        return headers | {"x-ghl-signature": sign_ed25519(body)}
    if mode == 1 and path == "/webhooks/activity":
        try:
            return headers | standard_headers(body, "msg_fuzz")
        except UnicodeDecodeError:
            return headers
    if mode == 1 and path == "/webhooks/workflow":
        return headers | {"authorization": f"Bearer {WORKFLOW_TOKEN}"}
    return headers


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    path=PATHS,
    body=st.binary(max_size=300)
    | SHAPED.map(lambda d: json.dumps(d).encode())
    | JSON.map(lambda d: json.dumps(d).encode()),
    headers=HEADERS,
    mode=st.integers(0, 1),
    b64=st.booleans(),
    method=st.sampled_from(["POST", "POST", "GET", "PUT"]),
)
def test_no_input_gives_a_server_error(
    intake: Intake, path: str, body: bytes, headers: dict[str, str], mode: int, b64: bool, method: str
) -> None:
    event = function_url_event(path, b"", signed(path, body, headers, mode), method=method)
    event["isBase64Encoded"] = b64 or not _is_text(body)
    event["body"] = base64.b64encode(body).decode() if event["isBase64Encoded"] else body.decode()
    from leadflow.intake import service

    with patch.object(service.logger, "exception") as unexpected:
        response = intake.app.lambda_handler(event, intake.context)
    assert not unexpected.called, "an unexpected exception was caught: a bug, not bad input"
    assert 200 <= response["statusCode"] < 500
    assert "Traceback" not in response["body"]
    json.loads(response["body"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    event=st.dictionaries(
        st.sampled_from(
            ["rawPath", "headers", "body", "isBase64Encoded", "requestContext", "queryStringParameters", "Records"]
        ),
        JSON,
        max_size=6,
    )
)
def test_malformed_lambda_events_give_no_server_error(intake: Intake, event: dict[str, Any]) -> None:
    if isinstance(event.get("Records"), list) and event["Records"]:
        event["Records"] = []  # an SQS batch is the queue's to shape; only Function URL requests are fuzzed
    response = intake.app.lambda_handler(event, intake.context)
    assert response["statusCode"] < 500


def _is_text(body: bytes) -> bool:
    try:
        body.decode()
    except UnicodeDecodeError:
        return False
    return True
