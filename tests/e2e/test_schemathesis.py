"""Schemathesis against the HTTP API's OpenAPI document, as the local stack serves it (/_local/openapi.json).

Every operation gets a bounded number of generated requests (valid and invalid), with a valid JWT so
they reach the handlers. Each reply must: not be a 5xx; have a status code, content type and body that
the document declares; and, when it is a 4xx, be JSON `{"message": "<string>", ...}` (the contract's
error shape). Without a token, every operation answers 401 with such a body.

Some requests name a lead the stack knows (a contact with a phone and an email, and some activity,
in a location of its own), so that they get past "unknown lead" to scores, queued messages, guardrail
refusals and message history; the rest name whatever Hypothesis draws.

Schemathesis's Python API under Hypothesis's @given, not its pytest plugin: the plugin's lazy
`from_fixture` schema (the stack is a fixture) fails on this pytest (it sets a node's `_nodeid`).

The stack is this module's own: PUT /followups/monitoring flips a stack-wide switch the other
end-to-end tests rely on.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import Case, CheckContext, GenerationMode, Response
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from leadflow.cli import activity_event, ghl_event, sign_activity, sign_ghl
from local.keys import LocalKeys, ensure
from local.launch import Launched, StackFailed, launch
from tests.e2e.conftest import DROPPED
from tests.helpers import zone_at

pytestmark = pytest.mark.e2e

# The contract's HTTP API routes (ARCHITECTURE.md, "Contract: HTTP").
OPERATIONS = [
    "POST /leads/{lead_id}/score",
    "GET /leads/{lead_id}/score",
    "GET /leads/high-intent",
    "POST /leads/{lead_id}/messages",
    "GET /leads/{lead_id}/messages",
    "GET /followups/stats",
    "PUT /followups/monitoring",
]
LOCATION, LEAD = "fuzz-location", "fuzz-lead"
MAX_EXAMPLES = 25  # per operation and generation mode (valid, invalid): well under a minute in all


def errors_are_json_messages(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """A 4xx is JSON with a `message` string (ARCHITECTURE.md: errors are JSON {"message": "..."})."""
    if not 400 <= response.status_code < 500:
        return None
    try:
        body = response.json()
    except ValueError:
        raise AssertionError(f"{response.status_code} is not JSON: {response.text[:200]!r}") from None
    if not (isinstance(body, dict) and isinstance(body.get("message"), str)):
        raise AssertionError(f"{response.status_code} has no message string: {body!r}")
    return True


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
    errors_are_json_messages,
]


@pytest.fixture(scope="module")
def fuzzed_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Launched, LocalKeys]]:
    state_dir: Path = tmp_path_factory.mktemp("schemathesis-stack")
    try:
        launched = launch(60, state_dir / "stack.log", state_dir=state_dir, drop_env=DROPPED)
    except StackFailed as exc:
        pytest.fail(str(exc))
    try:
        keys = ensure(state_dir)
        seed_lead(launched.base, keys)
        yield launched, keys
    finally:
        launched.stop()


def seed_lead(base: str, keys: LocalKeys) -> None:
    """LEAD in LOCATION: a GHL contact at midday local time, with a phone and an email, and some
    activity (no agent inquiry: that would hand it off, which pauses its messages)."""
    contact = ghl_event(
        "ContactCreate", LOCATION, LEAD, firstName="Ana", phone="+16175550100", email="ana@example.com",
        timezone=zone_at(12),
    )  # fmt: skip
    body = json.dumps(contact).encode()
    replies = [httpx.post(f"{base}/webhooks/ghl", content=body, headers=sign_ghl(body, keys.ghl_private_pem))]
    for signal in ("pricing_tool_usage", "neighborhood_research", "market_report_engagement"):
        body = json.dumps(activity_event(LOCATION, LEAD, signal)).encode()
        replies.append(
            httpx.post(f"{base}/webhooks/activity", content=body, headers=sign_activity(body, keys.signing_secret))
        )
    assert [r.json() for r in replies] == [{"status": "accepted"}] * 4


@pytest.fixture(scope="module")
def openapi_document(fuzzed_stack: tuple[Launched, LocalKeys]) -> dict[str, Any]:
    launched, _ = fuzzed_stack
    reply = httpx.get(f"{launched.base}/_local/openapi.json", timeout=60)
    assert reply.status_code == 200, reply.text
    document: dict[str, Any] = reply.json()
    return document


@pytest.fixture(scope="module")
def api_schema(fuzzed_stack: tuple[Launched, LocalKeys], openapi_document: dict[str, Any]) -> Any:
    launched, keys = fuzzed_stack
    schema = schemathesis.openapi.from_url(f"{launched.base}/_local/openapi.json", timeout=60)
    schema.config.update(base_url=launched.base, headers={"Authorization": f"Bearer {keys.token()}"})
    return schema


def test_the_document_has_the_contracts_operations(openapi_document: dict[str, Any]) -> None:
    found = {
        f"{method.upper()} {path}" for path, operations in openapi_document["paths"].items() for method in operations
    }
    assert found == set(OPERATIONS)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["valid", "invalid"])
@pytest.mark.parametrize("operation", OPERATIONS)
def test_every_operation_keeps_to_its_document(api_schema: Any, operation: str, mode: GenerationMode) -> None:
    method, path = operation.split(" ", 1)
    api_operation = api_schema[path][method]
    known: dict[str, Any] = {"query": {"location_id": LOCATION}}
    if "{lead_id}" in path:
        known["path_parameters"] = {"lead_id": LEAD}
    strategy = st.one_of(
        api_operation.as_strategy(generation_mode=mode), api_operation.as_strategy(generation_mode=mode, **known)
    )

    @given(case=strategy)
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        derandomize=True,  # the same requests each run: a landing is never blocked by a new random draw
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Case) -> None:
        case.call_and_validate(checks=CHECKS)

    run()


def test_every_operation_without_a_token_is_401_json(
    fuzzed_stack: tuple[Launched, LocalKeys], openapi_document: dict[str, Any]
) -> None:
    launched, _ = fuzzed_stack
    answers = {}
    for path, operations in openapi_document["paths"].items():
        for method in operations:
            reply = httpx.request(method.upper(), launched.base + path.replace("{lead_id}", "lead-1"), json={})
            answers[f"{method.upper()} {path}"] = (reply.status_code, reply.headers["content-type"], reply.text)
    assert answers == dict.fromkeys(OPERATIONS, (401, "application/json", '{"message": "Unauthorized"}'))
