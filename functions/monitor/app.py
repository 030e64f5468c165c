"""Monitor function: on the EventBridge schedule, queue follow-ups for high-intent leads."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from leadflow.followup import run_monitor
from leadflow.observability import logger, metrics, tracer


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    report = run_monitor()
    logger.info("monitor run", extra=asdict(report))
    return asdict(report)
