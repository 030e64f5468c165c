"""The monitor's fan-out in the template: its shard queue and dead-letter queue, the monitor's event
source on it, the role's rights, the settings and the alarms."""

from __future__ import annotations

from typing import Any

from leadflow import config, monitor_shards
from tests.template.sam import LOGICAL_ID, granted, of_type

MONITOR = LOGICAL_ID["monitor"]


def default(sam_template: dict[str, Any], name: str) -> Any:
    return sam_template["Parameters"][name]["Default"]


def shard_mapping(resources: dict[str, Any]) -> dict[str, Any]:
    (mapping,) = [
        m["Properties"]
        for m in of_type(resources, "AWS::Lambda::EventSourceMapping").values()
        if m["Properties"]["FunctionName"] == {"Ref": MONITOR}
    ]
    return mapping


def test_the_monitor_consumes_the_shard_queue_one_shard_at_a_time_with_a_concurrency_parameter(
    sam_template: dict[str, Any], resources: dict[str, Any]
) -> None:
    mapping = shard_mapping(resources)

    assert mapping["EventSourceArn"] == {"Fn::GetAtt": ["MonitorShardQueue", "Arn"]}
    assert mapping["BatchSize"] == 1
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["ScalingConfig"] == {"MaximumConcurrency": {"Ref": "MonitorMaxConcurrency"}}
    assert 2 <= default(sam_template, "MonitorMaxConcurrency") <= 1000
    # and it still runs on its schedule
    (rule,) = of_type(resources, "AWS::Events::Rule").values()
    assert rule["Properties"]["Targets"][0]["Arn"] == {"Fn::GetAtt": [MONITOR, "Arn"]}


def test_the_monitor_gets_the_shard_queue_and_the_shard_size_the_code_defaults_to(
    sam_template: dict[str, Any], resources: dict[str, Any]
) -> None:
    env = resources[MONITOR]["Properties"]["Environment"]["Variables"]

    assert env["MONITOR_SHARD_QUEUE_URL"] == {"Ref": "MonitorShardQueue"}
    assert env["MONITOR_SHARD_LEADS"] == {"Ref": "MonitorShardLeads"}
    assert default(sam_template, "MonitorShardLeads") == config.DEFAULT_SHARD_LEADS
    for function in ("webhook", "score", "send"):
        variables = resources[LOGICAL_ID[function]]["Properties"]["Environment"]["Variables"]
        assert "MONITOR_SHARD_QUEUE_URL" not in variables, function


def test_a_shard_outlives_neither_its_plan_nor_its_retries_and_a_dead_lease_ends_before_it_comes_back(
    resources: dict[str, Any],
) -> None:
    queue = resources["MonitorShardQueue"]["Properties"]
    timeout = resources[MONITOR]["Properties"]["Timeout"]
    visibility, retention = queue["VisibilityTimeout"], queue["MessageRetentionPeriod"]
    receives = queue["RedrivePolicy"]["maxReceiveCount"]

    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {"Fn::GetAtt": ["MonitorShardDLQ", "Arn"]}
    # the stored plan and the snapshots live as long as a shard message may
    assert retention == monitor_shards.RUN_TTL
    # a shard failing every time reaches the dead-letter queue (and its alarm) before it expires
    assert receives * visibility < retention
    # an invocation that died holds its lease at most timeout + margin: gone before SQS shows the shard again
    assert timeout + monitor_shards.LEASE_MARGIN < visibility
    assert queue["SqsManagedSseEnabled"] is True


def test_only_the_monitor_may_queue_shards_and_it_may_poll_no_other_queue(resources: dict[str, Any]) -> None:
    senders = {f for f in LOGICAL_ID if "MonitorShardQueue" in granted(resources, f, "sqs:SendMessage")}

    assert senders == {"monitor"}
    assert granted(resources, "monitor", "sqs:ReceiveMessage") == {"MonitorShardQueue"}
    assert granted(resources, "monitor", "sqs:DeleteMessage") == {"MonitorShardQueue"}
    assert granted(resources, "monitor", "sqs:SendMessage") == {"FollowupQueue", "MonitorShardQueue"}


def test_alarms_watch_the_shard_dead_letter_queue_and_shards_waiting_past_the_interval(
    resources: dict[str, Any],
) -> None:
    alarms = {
        (a["Properties"]["MetricName"], a["Properties"]["Dimensions"][0]["Value"]["Fn::GetAtt"][0]): a["Properties"]
        for a in of_type(resources, "AWS::CloudWatch::Alarm").values()
        if a["Properties"].get("Namespace") == "AWS/SQS"
    }

    dlq = alarms[("ApproximateNumberOfMessagesVisible", "MonitorShardDLQ")]
    assert (dlq["Threshold"], dlq["ComparisonOperator"]) == (1, "GreaterThanOrEqualToThreshold")
    late = alarms[("ApproximateAgeOfOldestMessage", "MonitorShardQueue")]
    assert late["Threshold"] == {"Ref": "BehavioralMonitoringInterval"}
    assert late["ComparisonOperator"] == "GreaterThanThreshold"
    for alarm in (dlq, late):
        assert alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}]
