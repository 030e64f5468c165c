"""The template's share of sending safety (ARCHITECTURE.md, "Contract: what must never happen"): a cap
on the public Function URL, a send timeout above the longest job, spilled events that outlast a Redis
outage and hold automated sends back, and traces that record no responses."""

from __future__ import annotations

import re
from typing import Any

from tests.helpers import ROOT
from tests.template.sam import FUNCTIONS, LOGICAL_ID, actions, granted, resource_names, role_of, statements


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


def test_the_send_timeout_exceeds_the_longest_job_and_the_followup_queue_hides_it_six_times(
    resources: dict[str, Any],
) -> None:
    from leadflow import compose, ghl
    from leadflow.sending import LONGEST_JOB_SECONDS

    timeout = resources[LOGICAL_ID["send"]]["Properties"]["Timeout"]
    visibility = resources["FollowupQueue"]["Properties"]["VisibilityTimeout"]

    # the code's own limits: Claude's attempts, one shared budget for waits, each GHL attempt's timeouts
    attempt = ghl.TIMEOUT.connect + ghl.TIMEOUT.write + ghl.TIMEOUT.read
    longest = compose.CLAUDE_ATTEMPTS * compose.CLAUDE_TIMEOUT + ghl.MAX_WAIT + ghl.MAX_ATTEMPTS * attempt
    assert LONGEST_JOB_SECONDS == longest == 95  # the arithmetic in template.yaml's comment
    # a job started with that much left ends before the timeout, and a batch has room for several
    assert timeout >= LONGEST_JOB_SECONDS + 60
    assert visibility >= 6 * timeout


REDIS_OUTAGE = 2 * 3600  # seconds of Redis outage the contract says spilled events survive


def test_spilled_events_outlast_a_two_hour_redis_outage_before_the_dead_letter_queue(
    resources: dict[str, Any],
) -> None:
    # Given a spilled event whose replay fails on every receive while Redis is down
    intake = resources["IntakeQueue"]["Properties"]
    receives = intake["RedrivePolicy"]["maxReceiveCount"]
    visibility = intake["VisibilityTimeout"]

    # Then each receive hides it for the visibility timeout, so it reaches the DLQ no sooner than
    # receives x visibility: past the outage with a margin, and the queue keeps it far longer still
    assert isinstance(receives, int), "a count of its own, not the follow-up queue's MaxReceiveCount"
    assert receives * visibility >= 1.5 * REDIS_OUTAGE
    assert visibility >= 6 * resources[LOGICAL_ID["webhook"]]["Properties"]["Timeout"]
    assert intake["MessageRetentionPeriod"] >= 4 * 24 * 3600 > 10 * receives * visibility
    # a message keeps its first enqueue time in the DLQ: there, it must live longer still
    assert resources["IntakeDLQ"]["Properties"]["MessageRetentionPeriod"] > intake["MessageRetentionPeriod"]


def test_the_monitor_and_send_functions_may_read_the_intake_queues_depth_and_nothing_more(
    resources: dict[str, Any],
) -> None:
    # While spilled events wait for replay (a STOP may be among them) no automated follow-up is sent:
    # the functions that start one read the intake queue's depth, and must not take its messages.
    for function in ("monitor", "send"):
        env = resources[LOGICAL_ID[function]]["Properties"]["Environment"]["Variables"]
        assert env["INTAKE_QUEUE_URL"] == {"Ref": "IntakeQueue"}, function
        on_intake = {
            action
            for statement in statements(role_of(resources, LOGICAL_ID[function]))
            if "IntakeQueue" in resource_names(statement)
            for action in actions(statement)
        }
        assert on_intake == {"sqs:GetQueueAttributes"}, function
        assert granted(resources, function, "sqs:GetQueueAttributes") >= {"IntakeQueue"}


# A decorator or tracer call that turns response capture back on, whatever the environment says.
_CAPTURE_RESPONSE_ON = re.compile(r"capture_response\s*=\s*True")


def test_traces_record_no_responses_but_keep_errors(resources: dict[str, Any]) -> None:
    for function in FUNCTIONS:
        env = resources[LOGICAL_ID[function]]["Properties"]["Environment"]["Variables"]
        assert env["POWERTOOLS_TRACER_CAPTURE_RESPONSE"] == "false", function
        assert env.get("POWERTOOLS_TRACER_CAPTURE_ERROR", "true") == "true", function

    sources = [*ROOT.glob("functions/*/app.py"), *(ROOT / "layers/common/leadflow").rglob("*.py")]
    overriding = [str(s.relative_to(ROOT)) for s in sources if _CAPTURE_RESPONSE_ON.search(s.read_text())]
    assert overriding == [], "capture_response=True overrides POWERTOOLS_TRACER_CAPTURE_RESPONSE"
