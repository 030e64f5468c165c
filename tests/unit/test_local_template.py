"""The local runner's reading of template.yaml: what it will serve, poll and schedule."""

from __future__ import annotations

from pathlib import Path

import pytest

from local.template import NO_VALUE, Resolver, TemplateError, rate_seconds, read

SMALL = """
Transform: AWS::Serverless-2016-10-31
Parameters:
  Interval: {Type: Number, Default: 300}
  Enabled: {Type: String, Default: "true"}
Conditions:
  IsEnabled: !Equals [!Ref Enabled, "true"]
Mappings:
  Rates: {"300": {Expression: rate(5 minutes)}}
Globals:
  Function:
    Handler: app.lambda_handler
    Timeout: 10
    Environment:
      Variables: {SHARED: shared}
Resources:
  Jobs: {Type: AWS::SQS::Queue, Properties: {RedrivePolicy: {deadLetterTargetArn: !GetAtt JobsDLQ.Arn}}}
  JobsDLQ: {Type: AWS::SQS::Queue}
  Api:
    Type: AWS::Serverless::HttpApi
    Properties:
      Auth:
        DefaultAuthorizer: Jwt
        Authorizers: {Jwt: {JwtConfiguration: {issuer: https://issuer.example/, audience: [leadflow]}}}
  Send:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/send/
      Timeout: 30
      Environment:
        Variables:
          QUEUE: !Ref Jobs
          URL: !Sub "https://${AWS::Region}.example/${Jobs}"
          MAYBE: !If [IsEnabled, "on", !Ref AWS::NoValue]
      Events:
        Stats: {Type: HttpApi, Properties: {ApiId: !Ref Api, Method: get, Path: /followups/stats}}
        Open: {Type: HttpApi, Properties: {ApiId: !Ref Api, Method: get, Path: /open, Auth: {Authorizer: NONE}}}
        Jobs:
          Type: SQS
          Properties: {Queue: !GetAtt Jobs.Arn, BatchSize: 5, FunctionResponseTypes: [ReportBatchItemFailures]}
  Monitor:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/monitor/
      Events:
        Tick: {Type: Schedule, Properties: {Schedule: !FindInMap [Rates, !Ref Interval, Expression]}}
        Bus: {Type: EventBridgeRule, Properties: {Pattern: {source: [x]}}}
"""


@pytest.fixture
def template(tmp_path: Path) -> Path:
    path = tmp_path / "template.yaml"
    path.write_text(SMALL)
    return path


def test_functions_take_globals_and_their_own_settings(template: Path) -> None:
    stack = read(template)
    send = stack.functions["Send"]
    assert (send.handler, send.timeout, send.code_dir) == ("app.lambda_handler", 30, template.parent / "functions/send")
    assert stack.functions["Monitor"].timeout == 10
    assert send.environment["SHARED"] == "shared"


def test_http_routes_carry_the_default_authorizer_unless_opened(template: Path) -> None:
    routes = {(r.method, r.path): r.authorizer for r in read(template).routes}
    assert routes == {("GET", "/followups/stats"): "__default__", ("GET", "/open"): None}
    stack = read(template)
    assert stack.default_authorizer["Api"] == "Jwt"
    assert stack.authorizers["Api"]["Jwt"].issuer == "https://issuer.example/"


def test_sqs_sources_and_queues_dead_letter_queues_first(template: Path) -> None:
    stack = read(template)
    [source] = stack.sqs_sources
    assert (source.function, source.queue, source.batch_size, source.report_failures) == ("Send", "Jobs", 5, True)
    assert stack.queues == ["JobsDLQ", "Jobs"]


def test_what_is_not_run_locally_is_listed(template: Path) -> None:
    assert read(template).unsupported == ["Monitor.Bus (EventBridgeRule)"]


def test_the_resolver_handles_ref_sub_if_and_find_in_map(template: Path) -> None:
    stack = read(template)
    resolver = Resolver(stack.raw, stack.parameter_defaults(), refs={"Jobs": "http://moto/jobs"})
    env = stack.functions["Send"].environment
    assert resolver.resolve(env["QUEUE"]) == "http://moto/jobs"
    assert resolver.resolve(env["URL"]) == "https://us-east-1.example/http://moto/jobs"
    assert resolver.resolve(env["MAYBE"]) == "on"
    off = Resolver(stack.raw, stack.parameter_defaults() | {"Enabled": "false"})
    assert off.resolve(env["MAYBE"]) is NO_VALUE
    [tick] = stack.schedules
    assert rate_seconds(resolver.resolve(tick.expression)) == 300


def test_an_unknown_ref_is_an_error(template: Path) -> None:
    stack = read(template)
    with pytest.raises(TemplateError):
        Resolver(stack.raw, {}).resolve({"Ref": "Nowhere"})


@pytest.mark.parametrize(
    ("expression", "seconds"),
    [("rate(5 minutes)", 300), ("rate(1 minute)", 60), ("rate(2 hours)", 7200), ("cron(0 12 * * ? *)", None)],
)
def test_rate_expressions_become_seconds(expression: str, seconds: int | None) -> None:
    assert rate_seconds(expression) == seconds


def test_the_projects_template_declares_what_the_runner_serves() -> None:
    stack = read()
    assert set(stack.functions) == {"WebhookFunction", "ScoreFunction", "MonitorFunction", "SendFunction"}
    assert {r.path for r in stack.routes} >= {"/leads/{lead_id}/score", "/followups/stats", "/leads/high-intent"}
    assert {s.queue for s in stack.sqs_sources} == {"IntakeQueue", "FollowupQueue", "MonitorShardQueue"}
    assert "MonitorShardQueue" in stack.queues
    assert stack.queues.index("MonitorShardDLQ") < stack.queues.index("MonitorShardQueue")
    assert stack.functions["WebhookFunction"].url_auth == "NONE"
