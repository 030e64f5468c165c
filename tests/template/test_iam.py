"""Least privilege for the queue consumers: each function may poll its own queue and no other, and no
role holds an SQS action on every resource (SAM's AWSLambdaSQSQueueExecutionRole would)."""

from __future__ import annotations

import copy
import json
from typing import Any

from tests.template.sam import (
    FUNCTIONS,
    LOGICAL_ID,
    actions,
    allows,
    granted,
    managed_policy_names,
    of_type,
    role_of,
    statements,
    transform,
)

POLL = ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes")  # what Lambda's SQS poller calls
# What SAM gives a function here without an event source: logs, X-Ray (Tracing), ENIs (VpcConfig). AWS's
# documents of these three hold no sqs action, so every SQS right a role has is in its inline policies.
BASELINE = {"AWSLambdaBasicExecutionRole", "AWSXrayWriteOnlyAccess", "AWSLambdaVPCAccessExecutionRole"}
QUEUE_OF = {"webhook": "IntakeQueue", "send": "FollowupQueue"}


def consumed_queues(resources: dict[str, Any]) -> dict[str, str]:
    """Function logical id -> the queue its event source mapping polls."""
    return {
        m["Properties"]["FunctionName"]["Ref"]: m["Properties"]["EventSourceArn"]["Fn::GetAtt"][0]
        for m in of_type(resources, "AWS::Lambda::EventSourceMapping").values()
    }


def test_no_role_has_the_managed_sqs_policy_or_an_sqs_action_on_every_resource(resources: dict[str, Any]) -> None:
    roles = of_type(resources, "AWS::IAM::Role")

    # every function's role is one of the template's (none comes from outside, unchecked)
    assert {resources[LOGICAL_ID[f]]["Properties"]["Role"]["Fn::GetAtt"][0] for f in FUNCTIONS} <= set(roles)
    for name, role in roles.items():
        assert "AWSLambdaSQSQueueExecutionRole" not in json.dumps(role), name
        assert managed_policy_names(role) <= BASELINE, name
        for statement in statements(role):
            if any(action.lower().startswith("sqs:") for action in actions(statement)):
                assert "*" not in json.dumps(statement["Resource"]), (name, statement)


def test_each_queue_consumer_may_poll_its_own_queue_and_no_other(resources: dict[str, Any]) -> None:
    consumers = consumed_queues(resources)

    assert consumers == {LOGICAL_ID[f]: queue for f, queue in QUEUE_OF.items()}
    for function in FUNCTIONS:
        for action in POLL[:2]:  # receiving and deleting are the consumer's alone
            assert granted(resources, function, action) == ({QUEUE_OF[function]} if function in QUEUE_OF else set())
        if function in QUEUE_OF:
            assert QUEUE_OF[function] in granted(resources, function, POLL[2])


def test_every_function_role_has_logs_xray_and_vpc_access_as_sam_gives_them(resources: dict[str, Any]) -> None:
    for function in FUNCTIONS:
        role = role_of(resources, LOGICAL_ID[function])
        assert managed_policy_names(role) == BASELINE, function
        (trust,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        assert trust["Principal"] == {"Service": ["lambda.amazonaws.com"]}, function
        assert allows(trust, "sts:AssumeRole"), function


def test_a_function_with_its_own_role_declares_no_policies_sam_would_ignore(sam_template: dict[str, Any]) -> None:
    own = [f for f in LOGICAL_ID.values() if "Role" in sam_template["Resources"][f]["Properties"]]

    assert sorted(own) == sorted(LOGICAL_ID[f] for f in QUEUE_OF)
    for function in own:
        assert "Policies" not in sam_template["Resources"][function]["Properties"], function


def test_without_its_own_role_sam_would_let_a_consumer_poll_every_queue(sam_template: dict[str, Any]) -> None:
    # Given the template with the webhook's role left to SAM (so this suite's silence means something)
    template = copy.deepcopy(sam_template)
    del template["Resources"]["WebhookFunction"]["Properties"]["Role"]
    del template["Resources"]["WebhookFunctionRole"]

    # When SAM transforms it, Then the generated role carries the managed policy on every queue
    generated = transform(template)["Resources"]["WebhookFunctionRole"]
    assert "AWSLambdaSQSQueueExecutionRole" in managed_policy_names(generated)
