"""The template's share of sending safety (ARCHITECTURE.md, "Contract: what must never happen"): a cap
on the public Function URL, a send timeout above the longest job, spilled events that outlast a Redis
outage and hold automated sends back, and traces that record no responses."""

from __future__ import annotations

from typing import Any

from tests.template.sam import LOGICAL_ID


def parameter(sam_template: dict[str, Any], name: str) -> dict[str, Any]:
    spec: dict[str, Any] = sam_template["Parameters"][name]
    return spec


def test_the_webhook_function_has_a_reserved_concurrency_from_a_parameter(
    sam_template: dict[str, Any], resources: dict[str, Any]
) -> None:
    webhook = resources[LOGICAL_ID["webhook"]]["Properties"]
    cap = parameter(sam_template, "WebhookMaxConcurrency")

    assert webhook["ReservedConcurrentExecutions"] == {"Ref": "WebhookMaxConcurrency"}
    assert (cap["Type"], cap["Default"]) == ("Number", 50)
    assert cap["MinValue"] >= 1  # 0 would stop the function altogether
    assert "429" in cap["Description"]  # what a caller past the cap gets, and GHL retries
