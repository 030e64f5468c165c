"""Logger, Metrics and Tracer, created once; every function shares POWERTOOLS_SERVICE_NAME.

The Tracer is Powertools' only where it traces: its X-Ray SDK import and patching are the largest
part of a function's init (bench/cold_start.py), so where tracing is off the handlers' decorator is
a no-op that imports nothing, as Powertools' disabled Tracer is in effect.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable
from typing import Any, TypeVar

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.shared import constants
from aws_lambda_powertools.shared.functions import strtobool

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME", "leadflow")
NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "leadflow")

F = TypeVar("F", bound=Callable[..., Any])


def tracing_enabled() -> bool:
    """Powertools' own rule, without its X-Ray SDK: tracing is on inside Lambda (LAMBDA_TASK_ROOT), not
    under SAM local or Chalice, unless POWERTOOLS_TRACE_DISABLED is true."""
    if strtobool(os.environ.get(constants.TRACER_DISABLED_ENV, "false")):
        return False
    inside_lambda = bool(os.environ.get(constants.LAMBDA_TASK_ROOT_ENV))
    emulated = bool(os.environ.get(constants.SAM_LOCAL_ENV) or os.environ.get(constants.CHALICE_LOCAL_ENV))
    return inside_lambda and not emulated


class Untraced:
    """The Tracer's handler decorator where tracing is off: the handler itself."""

    def capture_lambda_handler(
        self,
        lambda_handler: F | None = None,
        capture_response: bool | None = None,
        capture_error: bool | None = None,
    ) -> Any:
        if lambda_handler is None:
            return lambda handler: handler
        return lambda_handler


logger = Logger(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)
tracer: Tracer | Untraced = Tracer(service=SERVICE) if tracing_enabled() else Untraced()

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+")
_PHONE = re.compile(r"\+?\d[\d\s().-]{6,}\d")


def mask(text: str) -> str:
    """Replace email addresses and phone numbers in free text; logs never hold either."""
    return _PHONE.sub("[phone]", _EMAIL.sub("[email]", text))


def safe_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """Log-safe copy: drops bodies and masks contact details in string values."""
    out: dict[str, Any] = {}
    for key, value in fields.items():
        if key in {"body", "message", "html", "text"}:
            out[key] = f"[{len(str(value))} chars]"
        elif isinstance(value, str):
            out[key] = mask(value)
        else:
            out[key] = value
    return out


def count(name: str, value: float = 1, unit: MetricUnit = MetricUnit.Count, **dimensions: str) -> None:
    """One EMF metric with its own dimensions (Metrics' dimensions are shared by a whole flush).

    The very line Powertools' `single_metric` prints (a test holds them equal), written directly:
    single_metric builds and validates a whole metric set per call, about 50 us, a tenth of a
    webhook request's own work; this takes about 8."""
    document = {
        "_aws": {
            "Timestamp": int(time.time() * 1000),
            "CloudWatchMetrics": [
                {
                    "Namespace": NAMESPACE,
                    "Dimensions": [["service", *dimensions]],
                    "Metrics": [{"Name": name, "Unit": unit.value}],
                }
            ],
        },
        "service": SERVICE,
        **dimensions,
        name: [float(value)],
    }
    print(json.dumps(document, separators=(",", ":")))
