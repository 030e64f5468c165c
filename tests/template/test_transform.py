"""The SAM transform, run offline: what CloudFormation would receive from `sam deploy`."""

from __future__ import annotations

import json
import re
from typing import Any

from tests.helpers import ROOT
from tests.template.sam import LOGICAL_ID, granted, load_template, of_type, statements


def default(sam_template: dict[str, Any], parameter: str) -> Any:
    return sam_template["Parameters"][parameter]["Default"]


def test_the_transform_yields_four_python312_arm64_functions_on_the_layer_with_active_tracing(
    resources: dict[str, Any],
) -> None:
    functions = of_type(resources, "AWS::Lambda::Function")

    assert set(functions) == set(LOGICAL_ID.values())
    layers = of_type(resources, "AWS::Lambda::LayerVersion")
    assert len(layers) == 1
    (layer_id,) = layers
    assert layers[layer_id]["Properties"]["CompatibleArchitectures"] == ["arm64"]
    for name, function in functions.items():
        properties = function["Properties"]
        assert properties["Runtime"] == "python3.12", name
        assert properties["Architectures"] == ["arm64"], name
        assert properties["Handler"] == "app.lambda_handler", name
        assert properties["TracingConfig"] == {"Mode": "Active"}, name
        assert properties["Layers"] == [{"Ref": layer_id}], name
        assert properties["VpcConfig"]["SecurityGroupIds"] == [{"Ref": "FunctionSecurityGroup"}], name


def test_each_function_is_built_from_its_own_folder_and_the_layer_with_python312(sam_template: dict[str, Any]) -> None:
    resources = sam_template["Resources"]
    for function, logical_id in LOGICAL_ID.items():
        assert resources[logical_id]["Properties"]["CodeUri"] == f"functions/{function}/"
    layer = resources["CommonLayer"]
    assert layer["Properties"]["ContentUri"] == "layers/common/"
    assert layer["Metadata"] == {"BuildMethod": "makefile", "BuildArchitecture": "arm64"}


def test_the_webhook_has_a_function_url_without_auth_that_anyone_may_invoke(resources: dict[str, Any]) -> None:
    (url,) = of_type(resources, "AWS::Lambda::Url").values()

    assert url["Properties"]["AuthType"] == "NONE"
    assert url["Properties"]["TargetFunctionArn"] == {"Ref": "WebhookFunction"}
    public = [
        p["Properties"]
        for p in of_type(resources, "AWS::Lambda::Permission").values()
        if p["Properties"]["FunctionName"] == {"Ref": "WebhookFunction"} and p["Properties"]["Principal"] == "*"
    ]
    assert {p["Action"] for p in public} == {"lambda:InvokeFunctionUrl", "lambda:InvokeFunction"}


def test_the_http_api_authorizes_every_route_with_a_jwt_from_the_parameters(resources: dict[str, Any]) -> None:
    (api,) = of_type(resources, "AWS::ApiGatewayV2::Api").values()
    body = api["Properties"]["Body"]

    scheme = body["components"]["securitySchemes"]["LeadflowJwt"]
    authorizer = scheme["x-amazon-apigateway-authorizer"]
    assert authorizer["type"] == "jwt"
    assert authorizer["identitySource"] == "$request.header.Authorization"
    assert authorizer["jwtConfiguration"] == {"issuer": {"Ref": "JwtIssuer"}, "audience": {"Ref": "JwtAudience"}}
    operations = [op for path in body["paths"].values() for op in path.values()]
    assert len(operations) == 7
    for operation in operations:
        assert operation["security"] == [{"LeadflowJwt": []}]
        assert operation["x-amazon-apigateway-integration"]["payloadFormatVersion"] == "2.0"


def test_the_monitor_runs_on_an_eventbridge_schedule_every_five_minutes_by_default(
    sam_template: dict[str, Any], resources: dict[str, Any]
) -> None:
    (rule,) = of_type(resources, "AWS::Events::Rule").values()
    expression = rule["Properties"]["ScheduleExpression"]["Fn::FindInMap"]

    assert rule["Properties"]["Targets"][0]["Arn"] == {"Fn::GetAtt": ["MonitorFunction", "Arn"]}
    assert expression[1] == {"Ref": "BehavioralMonitoringInterval"}
    interval = default(sam_template, "BehavioralMonitoringInterval")
    assert interval == "300"
    assert sam_template["Mappings"][expression[0]][interval][expression[2]] == "rate(5 minutes)"


def test_every_allowed_monitoring_interval_maps_to_a_rate_of_the_same_length(sam_template: dict[str, Any]) -> None:
    parameter = sam_template["Parameters"]["BehavioralMonitoringInterval"]
    mapping = sam_template["Mappings"]["MonitorInterval"]

    assert set(parameter["AllowedValues"]) == set(mapping)
    for seconds, row in mapping.items():
        match = re.fullmatch(r"rate\((\d+) (minute|minutes)\)", row["Rate"])
        assert match, row["Rate"]
        minutes = int(match[1])
        assert (match[2] == "minute") == (minutes == 1)
        assert minutes * 60 == int(seconds)
        # the missing-run alarm waits for at least two runs
        assert row["MissingRunPeriod"] >= 2 * int(seconds)
        assert row["MissingRunPeriod"] % 60 == 0


def test_every_queue_consumer_reports_batch_item_failures(resources: dict[str, Any]) -> None:
    mappings = {
        m["Properties"]["FunctionName"]["Ref"]: m["Properties"]
        for m in of_type(resources, "AWS::Lambda::EventSourceMapping").values()
    }

    assert mappings["WebhookFunction"]["EventSourceArn"] == {"Fn::GetAtt": ["IntakeQueue", "Arn"]}
    assert mappings["SendFunction"]["EventSourceArn"] == {"Fn::GetAtt": ["FollowupQueue", "Arn"]}
    assert mappings["MonitorFunction"]["EventSourceArn"] == {"Fn::GetAtt": ["MonitorShardQueue", "Arn"]}
    assert set(mappings) == {"WebhookFunction", "SendFunction", "MonitorFunction"}
    for properties in mappings.values():
        assert properties["FunctionResponseTypes"] == ["ReportBatchItemFailures"]


def test_the_send_function_polls_the_followup_queue_with_a_maximum_concurrency_parameter(
    sam_template: dict[str, Any], resources: dict[str, Any]
) -> None:
    (send,) = [
        m["Properties"]
        for m in of_type(resources, "AWS::Lambda::EventSourceMapping").values()
        if m["Properties"]["FunctionName"] == {"Ref": "SendFunction"}
    ]

    assert send["ScalingConfig"] == {"MaximumConcurrency": {"Ref": "SendMaxConcurrency"}}
    assert 2 <= default(sam_template, "SendMaxConcurrency") <= 1000


def test_each_work_queue_redrives_to_its_own_encrypted_dead_letter_queue(resources: dict[str, Any]) -> None:
    queues = of_type(resources, "AWS::SQS::Queue")

    assert set(queues) == {
        "FollowupQueue", "FollowupDLQ", "IntakeQueue", "IntakeDLQ", "MonitorShardQueue", "MonitorShardDLQ",
    }  # fmt: skip
    for name in ("FollowupQueue", "IntakeQueue", "MonitorShardQueue"):
        redrive = queues[name]["Properties"]["RedrivePolicy"]
        assert redrive["deadLetterTargetArn"] == {"Fn::GetAtt": [f"{name.removesuffix('Queue')}DLQ", "Arn"]}
    # the follow-up queue's count is the parameter; the intake queue's is its own (test_sending_safety.py)
    assert queues["FollowupQueue"]["Properties"]["RedrivePolicy"]["maxReceiveCount"] == {"Ref": "MaxReceiveCount"}
    for name, queue in queues.items():
        assert queue["Properties"]["SqsManagedSseEnabled"] is True, name
    for dlq in ("FollowupDLQ", "MonitorShardDLQ"):
        assert queues[dlq]["Properties"]["MessageRetentionPeriod"] == 14 * 24 * 3600


def test_each_queue_hides_a_message_for_at_least_six_times_its_consumers_timeout(resources: dict[str, Any]) -> None:
    for mapping in of_type(resources, "AWS::Lambda::EventSourceMapping").values():
        queue = mapping["Properties"]["EventSourceArn"]["Fn::GetAtt"][0]
        function = mapping["Properties"]["FunctionName"]["Ref"]
        timeout = resources[function]["Properties"]["Timeout"]
        visibility = resources[queue]["Properties"]["VisibilityTimeout"]
        assert visibility >= 6 * timeout, (queue, function)


def test_the_redrive_count_default_is_the_one_the_send_function_counts_as_final() -> None:
    from leadflow import sending

    assert default(load_template(), "MaxReceiveCount") == sending.MAX_RECEIVES


def test_no_inline_policy_grants_a_wildcard_resource(resources: dict[str, Any]) -> None:
    for name, role in of_type(resources, "AWS::IAM::Role").items():
        for statement in statements(role):
            assert "*" not in json.dumps(statement["Resource"]), (name, statement)


def test_each_function_may_send_to_and_read_secrets_of_only_what_it_uses(resources: dict[str, Any]) -> None:
    assert granted(resources, "webhook", "sqs:SendMessage") == {"FollowupQueue", "IntakeQueue"}
    assert granted(resources, "monitor", "sqs:SendMessage") == {"FollowupQueue", "MonitorShardQueue"}
    assert granted(resources, "send", "sqs:SendMessage") == {"FollowupQueue"}
    assert granted(resources, "score", "sqs:SendMessage") == set()
    assert granted(resources, "send", "sqs:GetQueueAttributes") == {"FollowupQueue", "FollowupDLQ", "IntakeQueue"}
    assert granted(resources, "monitor", "sqs:GetQueueAttributes") == {"IntakeQueue", "MonitorShardQueue"}
    assert granted(resources, "webhook", "secretsmanager:GetSecretValue") == {
        "GhlApiKeySecret",
        "GhlClientSecret",
        "WorkflowWebhookTokenSecret",
        "WebhookSigningSecret",
    }
    assert granted(resources, "send", "secretsmanager:GetSecretValue") == {
        "GhlApiKeySecret",
        "GhlClientSecret",
        "AnthropicApiKeySecret",
    }
    assert granted(resources, "score", "secretsmanager:GetSecretValue") == set()
    assert granted(resources, "monitor", "secretsmanager:GetSecretValue") == set()


def test_every_function_logs_to_its_own_log_group_with_a_retention(resources: dict[str, Any]) -> None:
    groups = {
        json.dumps(g["Properties"].get("LogGroupName")): g["Properties"]
        for g in of_type(resources, "AWS::Logs::LogGroup").values()
    }
    for logical_id in LOGICAL_ID.values():
        group = groups[json.dumps({"Fn::Sub": f"/aws/lambda/${{{logical_id}}}"})]
        assert group["RetentionInDays"] == {"Ref": "LogRetentionDays"}


def test_the_cache_is_serverless_in_the_given_subnets_and_admits_only_the_functions(resources: dict[str, Any]) -> None:
    (cache,) = of_type(resources, "AWS::ElastiCache::ServerlessCache").values()
    properties = cache["Properties"]

    assert properties["Engine"] == {"Ref": "CacheEngine"}
    assert properties["SubnetIds"] == {"Ref": "SubnetIds"}
    assert properties["SecurityGroupIds"] == [{"Ref": "CacheSecurityGroup"}]
    (rule,) = resources["CacheSecurityGroup"]["Properties"]["SecurityGroupIngress"]
    assert rule["SourceSecurityGroupId"] == {"Ref": "FunctionSecurityGroup"}
    assert (rule["IpProtocol"], rule["FromPort"], rule["ToPort"]) == ("tcp", 6379, 6380)


def test_vpc_endpoints_for_sqs_and_secrets_manager_exist_only_when_asked_for(
    sam_template: dict[str, Any], resources: dict[str, Any]
) -> None:
    endpoints = of_type(resources, "AWS::EC2::VPCEndpoint")

    services = {json.dumps(e["Properties"]["ServiceName"]) for e in endpoints.values()}
    assert services == {
        json.dumps({"Fn::Sub": "com.amazonaws.${AWS::Region}.sqs"}),
        json.dumps({"Fn::Sub": "com.amazonaws.${AWS::Region}.secretsmanager"}),
    }
    for endpoint in endpoints.values():
        assert endpoint["Condition"] == "WithVpcEndpoints"
        assert endpoint["Properties"]["VpcEndpointType"] == "Interface"
    assert sam_template["Conditions"]["WithVpcEndpoints"] == {"Fn::Equals": [{"Ref": "CreateVpcEndpoints"}, "true"]}


def test_alarms_watch_both_dead_letter_queues_errors_throttles_and_missing_monitor_runs(
    resources: dict[str, Any],
) -> None:
    alarms = of_type(resources, "AWS::CloudWatch::Alarm")
    watched: set[tuple[str, str]] = set()
    for alarm in alarms.values():
        properties = alarm["Properties"]
        assert properties["AlarmActions"] == [{"Ref": "AlarmTopic"}]
        metrics = [properties] + [m["MetricStat"]["Metric"] for m in properties.get("Metrics", []) if "MetricStat" in m]
        for metric in metrics:
            if "MetricName" in metric:
                (dimension,) = metric["Dimensions"]
                value = dimension["Value"]
                target = value if isinstance(value, str) else value.get("Ref") or value["Fn::GetAtt"][0]
                watched.add((metric["MetricName"], target))

    for dlq in ("FollowupDLQ", "IntakeDLQ"):
        assert ("ApproximateNumberOfMessagesVisible", dlq) in watched
    assert ("InstallationsNeedingReinstall", "leadflow") in watched  # a refused refresh token
    for function in LOGICAL_ID.values():
        assert ("Errors", function) in watched
        assert ("Throttles", function) in watched
    (missing,) = [
        a["Properties"] for a in alarms.values() if a["Properties"].get("ComparisonOperator") == "LessThanThreshold"
    ]
    assert (missing["MetricName"], missing["Dimensions"][0]["Value"]) == ("Invocations", {"Ref": "MonitorFunction"})
    assert missing["TreatMissingData"] == "breaching"


EMITTED_METRICS = (
    "EventsReceived",
    "SignatureFailures",
    "EventsSpilled",
    "JobsQueued",
    "MessagesSent",
    "MessagesSkipped",
    "MessagesFailed",
    "ClaudeLatency",
    "ClaudeFallbacks",
    "SpeedToLeadSeconds",
    "LeadsByIntent",
)


# Metric emission in leadflow and the handlers: count("Name", ...), add_metric(name="Name", ...), single_metric(...).
_EMITS = re.compile(r"\b(?:count|add_metric|single_metric|metric)\(\s*(?:name\s*=\s*)?[\"']([A-Z][A-Za-z]+)[\"']")


def dashboard_searches(resources: dict[str, Any]) -> str:
    (dashboard,) = of_type(resources, "AWS::CloudWatch::Dashboard").values()
    body = dashboard["Properties"]["DashboardBody"]["Fn::Sub"]
    # the body is JSON once CloudFormation substitutes ${...}
    widgets = json.loads(re.sub(r"\$\{[\w:.]+\}", "x", body))["widgets"]
    return " ".join(
        item["expression"]
        for widget in widgets
        for line in widget["properties"]["metrics"]
        for item in line
        if isinstance(item, dict) and "expression" in item
    )


def test_the_dashboard_charts_every_metric_the_contract_names(resources: dict[str, Any]) -> None:
    searches = dashboard_searches(resources)

    assert searches.count('SEARCH(\'Namespace="leadflow" ') == searches.count("SEARCH(")
    for metric in EMITTED_METRICS:
        assert f'MetricName="{metric}"' in searches, metric


def test_the_dashboard_charts_every_metric_the_code_emits(resources: dict[str, Any]) -> None:
    sources = [*ROOT.glob("functions/*/app.py"), *(ROOT / "layers/common/leadflow").rglob("*.py")]
    emitted = {name for source in sources for name in _EMITS.findall(source.read_text())}

    searches = dashboard_searches(resources)
    assert emitted, "no metric emission found: the pattern above no longer matches the code"
    assert {name for name in emitted if f'MetricName="{name}"' not in searches} == set()


def test_the_outputs_give_the_function_url_the_api_url_and_the_queue_urls(cfn: dict[str, Any]) -> None:
    outputs = cfn["Outputs"]

    assert outputs["WebhookUrl"]["Value"] == {"Fn::GetAtt": ["WebhookFunctionUrl", "FunctionUrl"]}
    assert "${HttpApi}.execute-api" in outputs["HttpApiUrl"]["Value"]["Fn::Sub"]
    for queue in ("FollowupQueue", "IntakeQueue", "FollowupDLQ", "IntakeDLQ"):
        assert outputs[f"{queue}Url"]["Value"] == {"Ref": queue}


def test_every_parameter_is_in_exactly_one_parameter_group(sam_template: dict[str, Any]) -> None:
    groups = sam_template["Metadata"]["AWS::CloudFormation::Interface"]["ParameterGroups"]
    grouped = [name for group in groups for name in group["Parameters"]]

    assert sorted(grouped) == sorted(sam_template["Parameters"])
