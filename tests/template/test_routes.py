"""Every route a handler serves is declared in the template, and every route declared is served."""

from __future__ import annotations

from typing import Any

import pytest

from tests.template.sam import (
    CONTRACT_ROUTES,
    FUNCTIONS,
    LOGICAL_ID,
    handler_routes,
    served_routes,
    template_http_api_routes,
    to_template_path,
)

HTTP_API_FUNCTIONS = ("score", "send")


@pytest.mark.parametrize("function", FUNCTIONS)
def test_the_template_declares_exactly_the_http_api_routes_each_handler_serves(
    function: str, sam_template: dict[str, Any]
) -> None:
    # Given the routes the handler serves (its decorators; the contract's while it declares none)
    served, source = served_routes(function)
    if function == "webhook":
        served = set()  # behind the Function URL, not the HTTP API: see the webhook tests below

    # When the template's HttpApi events of that function are read
    declared = template_http_api_routes(sam_template)[function]

    # Then they are the same routes, each way round
    assert declared - served == set(), f"declared in template.yaml, not served by {source}"
    assert served - declared == set(), f"served by {source}, not declared in template.yaml"


def test_the_http_api_carries_exactly_the_contract_routes(sam_template: dict[str, Any]) -> None:
    declared = template_http_api_routes(sam_template)

    for function in FUNCTIONS:
        expected = CONTRACT_ROUTES[function] if function in HTTP_API_FUNCTIONS else set()
        assert declared[function] == expected, function


def test_the_webhook_serves_the_contract_routes_behind_its_function_url(sam_template: dict[str, Any]) -> None:
    served, source = served_routes("webhook")
    webhook = sam_template["Resources"][LOGICAL_ID["webhook"]]["Properties"]

    assert served == CONTRACT_ROUTES["webhook"], source
    assert webhook["FunctionUrlConfig"]["AuthType"] == "NONE"
    # each route is published as an output URL on the Function URL
    published = {
        output["Value"]["Fn::Sub"].removeprefix("${WebhookFunctionUrl.FunctionUrl}")
        for output in sam_template["Outputs"].values()
        if "Fn::Sub" in output["Value"] and "${WebhookFunctionUrl.FunctionUrl}" in output["Value"]["Fn::Sub"]
    }
    assert {f"/{path}" for path in published} == {path for _, path in served}


def test_the_monitor_serves_no_routes_and_runs_on_its_schedule_and_its_shards_only(
    sam_template: dict[str, Any],
) -> None:
    events = sam_template["Resources"][LOGICAL_ID["monitor"]]["Properties"]["Events"]

    assert handler_routes("monitor") == set()
    assert sorted(event["Type"] for event in events.values()) == ["SQS", "Schedule"]


def test_powertools_path_parameters_become_template_path_parameters() -> None:
    assert to_template_path("/leads/<lead_id>/score") == "/leads/{lead_id}/score"
    assert to_template_path("/followups/stats") == "/followups/stats"


def test_the_route_parser_reads_the_decorator_forms_powertools_offers(tmp_path, monkeypatch) -> None:
    from tests.template import sam

    # Given a handler with the shorthand, keyword and route() forms
    app = tmp_path / "functions" / "demo" / "app.py"
    app.parent.mkdir(parents=True)
    app.write_text(
        "@app.get('/a/<x>')\n"
        "@app.post(rule=\"/b\", summary='...')\n"
        '@app.route("/c", method=["PUT", "DELETE"])\n'
        "@app.route('/d')\n"
    )
    monkeypatch.setattr(sam, "ROOT", tmp_path)

    # When its routes are read, Then each form is found
    assert sam.handler_routes("demo") == {
        ("GET", "/a/{x}"),
        ("POST", "/b"),
        ("PUT", "/c"),
        ("DELETE", "/c"),
        ("GET", "/d"),
    }
