"""Webhook function: signed intake behind the Function URL, and the replay of spilled events (SQS).

One handler serves both: a Function URL request (payload 2.0) is verified and recorded by
`leadflow.intake`; an intake-queue batch is replayed into Redis, a record that still fails coming
back to the queue as a batch item failure.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from leadflow import intake
from leadflow.observability import logger, metrics, tracer

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.batch import BatchProcessor
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord


@functools.cache
def processor() -> BatchProcessor:
    """Powertools' batch utility, imported by the replay path alone: a request never needs it."""
    from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType

    return BatchProcessor(event_type=EventType.SQS)


def replay_record(record: SQSRecord) -> None:
    intake.replay(record.body)


def _is_sqs(event: Any) -> bool:
    records = event.get("Records") if isinstance(event, dict) else None
    return (
        bool(records)
        and isinstance(records, list)
        and isinstance(records[0], dict)
        and (records[0].get("eventSource") == "aws:sqs")
    )


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if _is_sqs(event):
        from aws_lambda_powertools.utilities.batch import process_partial_response

        return dict(
            process_partial_response(event=event, record_handler=replay_record, processor=processor(), context=context)
        )
    return intake.handle_request(event).to_function_url()
