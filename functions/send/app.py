"""Send function: follow-up jobs from SQS (exactly once per job_id; a `call` job is an agent handoff
task), write-backs to GHL (`"kind": "sync"`), and over the HTTP API the on-demand send, a lead's
message history, stats, and the monitoring switch."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, Literal

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.openapi.params import Body, Query
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, Field

from leadflow import sending, writeback
from leadflow.config import settings
from leadflow.followup_store import FollowupStore
from leadflow.http import Resolver, error_responses, install_error_handlers, ok
from leadflow.jobs import Job
from leadflow.observability import logger, metrics, tracer
from leadflow.redis_client import cache

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.batch import BatchProcessor
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
    from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig

app = Resolver(enable_validation=True)
install_error_handlers(app)

LocationQuery = Annotated[str | None, Query(description="GHL location; default GHL_LOCATION_ID")]


class SendRequest(BaseModel):
    channel: Literal["sms", "email"] | None = None
    message: str | None = Field(None, min_length=1, max_length=5000)


class MonitoringRequest(BaseModel):
    enabled: bool


class Queued(BaseModel):
    job_id: str
    status: Literal["queued"]


class HistoryEntry(BaseModel):
    job_id: str
    channel: str
    status: Literal["sent", "skipped", "failed", "handed_off"]
    reason: str | None = None
    body: str | None = None
    at: str = Field(description="ISO 8601 UTC", json_schema_extra={"format": "date-time"})


class History(BaseModel):
    messages: list[HistoryEntry] = Field(description="Newest first; an unknown lead has none")


class Stats(BaseModel):
    """The seed's get_task_stats(), for one location."""

    total_tasks: int = Field(ge=0, description="Jobs ever queued")
    pending: int = Field(ge=0, description="Queued, not yet ended")
    sent: int = Field(ge=0)
    handed_off: int = Field(ge=0, description="Agent tasks created")
    skipped: dict[str, int] = Field(description="A count per reason")
    skipped_total: int = Field(ge=0)
    failed: int = Field(ge=0, description="Ended without sending, after retries")
    dlq_depth: int | None = Field(description="Jobs in the dead-letter queue; null when SQS cannot say")
    is_running: bool
    send_mode: Literal["live", "dry-run"]
    location_id: str


class Monitoring(BaseModel):
    is_running: bool


@app.post(
    "/leads/<lead_id>/messages",
    summary="Queue a message now, under every guardrail",
    responses={202: ok(Queued, "Queued"), **error_responses(400, 404, 409)},
)
def request_message(
    lead_id: str, body: Annotated[SendRequest | None, Body()] = None, location_id: LocationQuery = None
) -> Response[dict[str, Any]]:
    request = body or SendRequest()
    job = sending.request_send(settings().location(location_id), lead_id, request.channel, request.message)
    return Response(202, content_types.APPLICATION_JSON, {"job_id": job.job_id, "status": "queued"})


@app.get(
    "/leads/<lead_id>/messages",
    summary="A lead's message history, newest first",
    responses={200: ok(History, "The lead's messages, newest first"), **error_responses()},
)
def message_history(lead_id: str, location_id: LocationQuery = None) -> dict[str, Any]:
    return {"messages": FollowupStore().history(settings().location(location_id), lead_id)}


@app.get(
    "/followups/stats",
    summary="Follow-up statistics (the seed's get_task_stats)",
    responses={200: ok(Stats, "The statistics"), **error_responses()},
)
def followup_stats(location_id: LocationQuery = None) -> dict[str, Any]:
    return sending.stats(settings().location(location_id))


@app.put(
    "/followups/monitoring",
    summary="Start or stop the monitor's scheduled follow-ups",
    responses={200: ok(Monitoring, "Whether the monitor queues follow-ups"), **error_responses(400)},
)
def set_monitoring(body: MonitoringRequest, location_id: LocationQuery = None) -> dict[str, Any]:
    FollowupStore().set_monitoring(body.enabled)
    return {"is_running": body.enabled}


# The queue's path alone needs the batch and idempotency utilities, made on its first batch: an HTTP
# request never imports them, and init opens no Redis connection (in cluster mode the client connects
# when made; a SnapStart snapshot must not hold one either).
@functools.cache
def processor() -> BatchProcessor:
    from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType

    return BatchProcessor(event_type=EventType.SQS)


@functools.cache
def idempotency() -> IdempotencyConfig:
    from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig

    return IdempotencyConfig(event_key_jmespath="job_id", expires_after_seconds=3 * 86_400)


def send_once(job: dict[str, Any], attempt: int) -> dict[str, Any]:
    """One job; called through `_once()`. Its module and name are in its idempotency keys in Redis."""
    return sending.process_job(Job(**job), attempt).to_json()


@functools.cache
def _once() -> Callable[..., dict[str, Any]]:
    """`send_once` at most once per job_id: Powertools idempotency on the Redis client."""
    from aws_lambda_powertools.utilities.idempotency import idempotent_function
    from aws_lambda_powertools.utilities.idempotency.persistence.cache import CachePersistenceLayer

    persistence = CachePersistenceLayer(client=cache().client)
    once = idempotent_function(data_keyword_argument="job", config=idempotency(), persistence_store=persistence)
    return once(send_once)


class TooLittleTime(Exception):
    """Not started: the job might outlast the invocation. SQS delivers it again."""


def record_handler(record: SQSRecord, lambda_context: LambdaContext | None = None) -> dict[str, Any]:
    attempt = int(record.attributes.approximate_receive_count or 1)
    sync = writeback.SyncJob.parse(record.body)  # by kind: "sync", else a message (or call) job
    if sync is not None:
        return writeback.process_sync(sync, attempt)  # idempotent writes: no time check needed
    job = Job.from_json(record.body)
    if lambda_context and lambda_context.get_remaining_time_in_millis() < sending.LONGEST_JOB_SECONDS * 1000:
        raise TooLittleTime(job.job_id)  # a GHL call cut off by the timeout would have an unknown outcome
    return _once()(job=_as_dict(job), attempt=attempt)


def _as_dict(job: Job) -> dict[str, Any]:
    return {name: getattr(job, name) for name in Job.__dataclass_fields__}


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler(capture_response=False)  # responses hold message bodies
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if "Records" in event:
        from aws_lambda_powertools.utilities.batch import process_partial_response

        idempotency().register_lambda_context(context)
        return dict(process_partial_response(event, record_handler, processor(), context))
    return app.resolve(event, context)
