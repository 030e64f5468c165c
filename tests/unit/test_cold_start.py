"""Init imports only what every invocation needs: no X-Ray SDK where tracing is off, no batch or
idempotency utilities outside the queue paths, no pydantic-settings, no HTTP client (httpx, imported
by the first GHL call; anthropic, by the first message Claude writes), and no connection at init."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from leadflow import observability
from tests.helpers import ROOT

LAZY = (
    "aws_xray_sdk",
    "pydantic_settings",
    "aws_lambda_powertools.utilities.batch",
    "aws_lambda_powertools.utilities.idempotency",
    "httpx",
    "anthropic",
)


def imported_after_loading(handlers: tuple[str, ...], env: dict[str, str], probe: str) -> Any:
    """In a fresh interpreter with only `env`: load the handlers, then print `probe` as JSON."""
    code = (
        "import json, sys; sys.path[:0] = ['layers/common', '.'];"
        "from tests.helpers import load_app;"
        f"apps = [load_app(name) for name in {handlers!r}];"
        f"print(json.dumps({probe}))"
    )
    env = {"PATH": "/usr/bin:/bin", "AWS_DEFAULT_REGION": "us-east-1", **env}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout)


def test_the_handlers_import_no_tracer_sdk_batch_idempotency_settings_library_or_http_client_at_init() -> None:
    # Given tracing off (as the template's default and the tests have it) and a Redis cluster nobody
    # listens on: an init that connected would fail
    env = {"POWERTOOLS_TRACE_DISABLED": "true", "REDIS_URL": "redis://127.0.0.1:1/0", "REDIS_CLUSTER": "true"}

    # When all four handlers are loaded
    probe = f"sorted(m for m in {LAZY!r} if m in sys.modules)"
    loaded = imported_after_loading(("webhook", "score", "monitor", "send"), env, probe)

    # Then none of the lazily loaded parts is imported
    assert loaded == []


def test_inside_lambda_with_tracing_on_the_handlers_trace_with_powertools_tracer() -> None:
    env = {"LAMBDA_TASK_ROOT": str(ROOT / "functions" / "webhook"), "REDIS_URL": "redis://127.0.0.1:1/0"}
    probe = (
        "[type(sys.modules['leadflow.observability'].tracer).__name__,"
        " sys.modules['leadflow.observability'].tracer.disabled, 'aws_xray_sdk.core' in sys.modules]"
    )
    assert imported_after_loading(("webhook",), env, probe) == ["Tracer", False, True]


@pytest.mark.parametrize(
    ("env", "on"),
    [
        ({"LAMBDA_TASK_ROOT": "/var/task"}, True),
        ({"LAMBDA_TASK_ROOT": "/var/task", "POWERTOOLS_TRACE_DISABLED": "true"}, False),
        ({"LAMBDA_TASK_ROOT": "/var/task", "POWERTOOLS_TRACE_DISABLED": "false"}, True),
        ({"LAMBDA_TASK_ROOT": "/var/task", "AWS_SAM_LOCAL": "true"}, False),
        ({}, False),  # outside Lambda, as Powertools' Tracer decides
    ],
)
def test_tracing_is_on_where_powertools_tracer_would_trace(
    env: dict[str, str], on: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("LAMBDA_TASK_ROOT", "POWERTOOLS_TRACE_DISABLED", "AWS_SAM_LOCAL", "AWS_CHALICE_CLI_MODE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert observability.tracing_enabled() is on


def test_without_tracing_the_handler_decorator_leaves_the_handler_as_it_is() -> None:
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return event

    untraced = observability.Untraced()
    assert untraced.capture_lambda_handler(capture_response=False)(handler) is handler
    assert untraced.capture_lambda_handler(handler) is handler
