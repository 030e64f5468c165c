"""Monitor function: on the EventBridge schedule, queue follow-ups for high-intent leads; a run too
big for one invocation is fanned out to the shard queue, whose messages (one shard each) come back
here as SQS events."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from leadflow.followup import run_monitor, run_shard
from leadflow.monitor_shards import LEASE_MARGIN, Shard
from leadflow.observability import logger, metrics, tracer


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if isinstance(event, dict) and event.get("Records"):
        return _shards(event, context)
    scheduled = event.get("time") if isinstance(event, dict) else None
    report = run_monitor(scheduled=scheduled if isinstance(scheduled, str) else None)
    logger.info("monitor run", extra=asdict(report))
    return asdict(report)


def _shards(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Shards from the shard queue; a shard that fails (or is being done elsewhere) is reported back
    to SQS as a batch item failure, and comes again after the visibility timeout."""
    # Imported here: the scheduled run, every five minutes, never needs the batch utility.
    from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

    def record_handler(record: SQSRecord) -> None:
        lease = context.get_remaining_time_in_millis() / 1000 + LEASE_MARGIN
        report = run_shard(Shard.from_json(record.body), lease)
        logger.info("monitor shard", extra=asdict(report))

    processor = BatchProcessor(event_type=EventType.SQS)
    return dict(
        process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
    )
