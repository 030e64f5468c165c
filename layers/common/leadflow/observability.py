"""Logger, Metrics and Tracer, created once; every function shares POWERTOOLS_SERVICE_NAME."""

from __future__ import annotations

import os
import re
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit, single_metric

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME", "leadflow")
NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "leadflow")

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)
tracer = Tracer(service=SERVICE)

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
    """One EMF metric with its own dimensions (Metrics' dimensions are shared by a whole flush)."""
    with single_metric(name=name, unit=unit, value=value, namespace=NAMESPACE) as metric:
        metric.add_dimension(name="service", value=SERVICE)
        for key, dim in dimensions.items():
            metric.add_dimension(name=key, value=dim)
