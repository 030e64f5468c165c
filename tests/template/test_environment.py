"""Every environment variable a handler reads is set in the template, with values the settings accept."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from leadflow.config import DEFAULT_SHARD_LEADS, Settings
from tests.helpers import ROOT
from tests.template.sam import FUNCTIONS, LOGICAL_ID, granted

# Settings fields the template leaves unset on purpose: the plain forms of secrets (the template
# passes the ..._SECRET_ARN form, so that no secret sits in the function's configuration).
NOT_IN_TEMPLATE = {
    "GHL_API_KEY", "GHL_CLIENT_SECRET", "WORKFLOW_WEBHOOK_TOKEN", "WEBHOOK_SIGNING_SECRET", "ANTHROPIC_API_KEY",
}  # fmt: skip
POWERTOOLS = {
    "POWERTOOLS_SERVICE_NAME",
    "POWERTOOLS_METRICS_NAMESPACE",
    "POWERTOOLS_LOG_LEVEL",
    "POWERTOOLS_TRACER_CAPTURE_RESPONSE",
    "POWERTOOLS_TRACE_DISABLED",
}
SETTINGS = {name.upper() for name in Settings.model_fields}

# Environment reads in handler and leadflow code: os.environ["X"], os.environ.get("X"), os.getenv("X").
_ENV_READ = re.compile(r"os\.(?:environ(?:\.get)?\s*[\[(]|getenv\s*\()\s*[\"']([A-Z0-9_]+)[\"']")
# Set by the Lambda runtime itself, never by the template.
_RUNTIME = re.compile(r"^(AWS_|_X_AMZN|_HANDLER$|LAMBDA_|TZ$)")


def environment(resources: dict[str, Any], function: str) -> dict[str, Any]:
    variables: dict[str, Any] = resources[LOGICAL_ID[function]]["Properties"]["Environment"]["Variables"]
    return variables


def test_every_variable_in_the_template_is_a_setting_or_powertools(resources: dict[str, Any]) -> None:
    for function in FUNCTIONS:
        unknown = set(environment(resources, function)) - SETTINGS - POWERTOOLS
        assert unknown == set(), f"{function}: not fields of leadflow.config.Settings: {sorted(unknown)}"


def test_every_setting_is_set_for_some_function_unless_it_is_a_plain_secret(resources: dict[str, Any]) -> None:
    everywhere = {name for function in FUNCTIONS for name in environment(resources, function)}

    missing = SETTINGS - NOT_IN_TEMPLATE - everywhere
    assert missing == set(), f"Settings fields no function gets from template.yaml: {sorted(missing)}"
    assert NOT_IN_TEMPLATE & everywhere == set(), "secrets go by ARN, never in plain"
    assert NOT_IN_TEMPLATE <= SETTINGS


def test_every_function_reaches_the_cache_over_tls_in_cluster_mode(resources: dict[str, Any]) -> None:
    for function in FUNCTIONS:
        env = environment(resources, function)
        assert env["REDIS_URL"] == {"Fn::Sub": "rediss://${Cache.Endpoint.Address}:${Cache.Endpoint.Port}"}, function
        assert env["REDIS_CLUSTER"] == "true", function
        assert set(env) >= POWERTOOLS, function
        assert env["POWERTOOLS_SERVICE_NAME"] == env["POWERTOOLS_METRICS_NAMESPACE"] == "leadflow"


@pytest.mark.parametrize(
    ("function", "queues"),
    [
        ("webhook", {"FOLLOWUP_QUEUE_URL": "FollowupQueue", "INTAKE_QUEUE_URL": "IntakeQueue"}),
        ("monitor", {"FOLLOWUP_QUEUE_URL": "FollowupQueue", "INTAKE_QUEUE_URL": "IntakeQueue"}),
        ("send", {"FOLLOWUP_QUEUE_URL": "FollowupQueue", "INTAKE_QUEUE_URL": "IntakeQueue"}),
        ("score", {}),
    ],
)
def test_each_function_gets_the_queue_urls_it_needs_and_no_others(
    function: str, queues: dict[str, str], resources: dict[str, Any]
) -> None:
    env = environment(resources, function)

    given = {name: env[name] for name in ("FOLLOWUP_QUEUE_URL", "INTAKE_QUEUE_URL") if name in env}
    assert given == {name: {"Ref": queue} for name, queue in queues.items()}


def test_each_secret_arn_names_a_secret_the_function_may_read(resources: dict[str, Any]) -> None:
    for function in FUNCTIONS:
        readable = granted(resources, function, "secretsmanager:GetSecretValue")
        for name, value in environment(resources, function).items():
            if not name.endswith("_SECRET_ARN"):
                continue
            (secret,) = re.findall(r'"Ref": "(\w+Secret)"', json.dumps(value))
            assert resources[secret]["Type"] == "AWS::SecretsManager::Secret"
            assert secret in readable, (function, name)


def test_every_environment_variable_the_code_reads_is_set_in_the_template(resources: dict[str, Any]) -> None:
    # The command-line tool (cli.py, __main__.py) runs on a user's machine, not in a function.
    user_tools = {"cli.py", "__main__.py"}
    package = [p for p in sorted((ROOT / "layers/common/leadflow").rglob("*.py")) if p.name not in user_tools]
    sources = [*sorted(ROOT.glob("functions/*/app.py")), *package]
    everywhere = {name for function in FUNCTIONS for name in environment(resources, function)}

    read = {(name, source.relative_to(ROOT)) for source in sources for name in _ENV_READ.findall(source.read_text())}
    unset = {(name, str(path)) for name, path in read if name not in everywhere and not _RUNTIME.match(name)}
    assert unset == set(), "read by the code, not set in template.yaml"
    assert ("POWERTOOLS_SERVICE_NAME", "layers/common/leadflow/observability.py") in {(n, str(p)) for n, p in read}


def _resolve(value: Any, parameters: dict[str, Any]) -> Any:
    """A variable's value at the parameters' defaults: conditions taken as true, resources as placeholders."""
    if not isinstance(value, dict):
        return str(value)
    ((key, argument),) = value.items()
    if key == "Ref":
        return str(parameters[argument]["Default"]) if argument in parameters else f"https://example/{argument}"
    if key == "Fn::Sub":
        return re.sub(r"\$\{[\w:.]+\}", lambda m: "6379" if m[0].endswith("Port}") else "cache.example", argument)
    if key == "Fn::If":
        return _resolve(argument[1], parameters)
    raise AssertionError(f"unexpected intrinsic {key}")


@pytest.mark.parametrize("function", FUNCTIONS)
def test_the_template_defaults_are_settings_the_functions_accept(
    function: str, sam_template: dict[str, Any], resources: dict[str, Any]
) -> None:
    # Given a function's variables at the template's defaults
    values = {
        name.lower(): _resolve(value, sam_template["Parameters"])
        for name, value in environment(resources, function).items()
        if name in SETTINGS
    }

    # When leadflow reads them, Then they validate, and mean what the template says
    settings = Settings(**values)
    assert settings.redis_url == "rediss://cache.example:6379"
    assert settings.redis_cluster is True
    assert settings.sending_hours == (8, 21)
    if function == "monitor":
        assert settings.behavioral_monitoring_interval == 300
        assert settings.monitor_shard_leads == DEFAULT_SHARD_LEADS  # the code's default
        assert settings.monitor_shard_queue_url == "https://example/MonitorShardQueue"
    if function == "send":
        assert settings.send_mode == "dry-run"
