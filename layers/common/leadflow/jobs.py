"""Follow-up jobs: the SQS message body of the contract, and writing them ten at a time."""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from leadflow.config import settings
from leadflow.errors import InvalidInput
from leadflow.observability import logger
from leadflow.scoring import PredictiveSellScore

SOURCES = ("monitor", "fast_path", "on_demand")
TOP_SIGNALS = 3  # the dominant signals a job carries, for the message
BATCH = 10  # SendMessageBatch's limit
WRITERS = 8  # parallel SendMessageBatch calls for large runs


@dataclass(frozen=True, slots=True)
class Job:
    job_id: str
    lead_id: str
    location_id: str
    channel: str
    source: str
    intent_level: str
    likelihood_score: float
    top_signals: list[str] = field(default_factory=list)
    message: str | None = None
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat().replace("+00:00", "Z"))
    triggered_at: float | None = None  # epoch of the lead's latest event, for speed-to-lead

    @classmethod
    def for_score(
        cls,
        job_id: str,
        location_id: str,
        score: PredictiveSellScore,
        channel: str,
        source: str,
        *,
        message: str | None = None,
        triggered_at: float | None = None,
    ) -> Job:
        """A job for a lead as scored now: its intent, likelihood and dominant signals."""
        return cls(
            job_id=job_id,
            lead_id=score.lead_id,
            location_id=location_id,
            channel=channel,
            source=source,
            intent_level=score.intent_level,
            likelihood_score=score.likelihood_score,
            top_signals=[k.type for k in score.key_signals[:TOP_SIGNALS]],
            message=message,
            triggered_at=triggered_at,
        )

    def to_json(self) -> str:
        return json.dumps({k: v for k, v in asdict(self).items() if v is not None})

    @classmethod
    def from_json(cls, body: str) -> Job:
        try:
            data = json.loads(body)
            names = set(cls.__dataclass_fields__)
            return cls(**{k: v for k, v in data.items() if k in names})
        except (ValueError, TypeError) as exc:
            raise InvalidInput(f"malformed follow-up job: {exc}") from None


def sqs_config() -> Any:
    """Every SQS call ends well inside the webhook's 10 s timeout (the fast path and the spill queue
    from there), or Lambda cuts it off with the lead's slot still claimed: 1 s to connect, 2 s to
    answer, 2 attempts. boto3's defaults are 60 s each."""
    from botocore.config import Config

    return Config(connect_timeout=1, read_timeout=2, retries={"max_attempts": 2, "mode": "standard"})


@functools.cache
def sqs() -> Any:
    import boto3  # only the functions that queue pay for it

    return boto3.client("sqs", config=sqs_config())


def followup_queue_url() -> str:
    url = settings().followup_queue_url
    if not url:
        raise InvalidInput("FOLLOWUP_QUEUE_URL is not set")
    return url


def send_jobs(jobs: Sequence[Job], queue_url: str | None = None) -> list[Job]:
    """Queue jobs with SendMessageBatch, ten per call, calls in parallel. Returns the jobs that failed."""
    url = queue_url or followup_queue_url()
    batches = [jobs[i : i + BATCH] for i in range(0, len(jobs), BATCH)]
    if len(batches) <= 1:
        return [failed for batch in batches for failed in _send_batch(url, batch)]
    with ThreadPoolExecutor(max_workers=min(WRITERS, len(batches))) as pool:
        return [failed for result in pool.map(lambda b: _send_batch(url, b), batches) for failed in result]


def _send_batch(url: str, batch: Sequence[Job]) -> list[Job]:
    return send_batches(sqs(), url, batch)


class Message(Protocol):
    def to_json(self) -> str: ...


M = TypeVar("M", bound=Message)


def send_batches(client: Any, url: str, messages: Sequence[M]) -> list[M]:
    """Queue messages with SendMessageBatch, ten per call, one call after another. Returns those
    SQS refused or that a failed call carried."""
    failed: list[M] = []
    for start in range(0, len(messages), BATCH):
        batch = messages[start : start + BATCH]
        entries = [{"Id": str(i), "MessageBody": message.to_json()} for i, message in enumerate(batch)]
        try:
            reply = client.send_message_batch(QueueUrl=url, Entries=entries)
        except Exception:
            failed += batch
            continue
        failed += [batch[int(failure["Id"])] for failure in reply.get("Failed", [])]
    return failed


# Spilled events waiting for replay (a STOP may be among them) hold every follow-up until they are
# recorded. The monitor reads the intake queue's depth at most this often per process; a send reads
# it every time, right before it acts: a STOP spilled a second after an "empty" answer must hold it.
REPLAY_CHECK_SECONDS = 10.0
_replay_seen: dict[str, tuple[float, bool]] = {}


def replay_pending(now: float, *, fresh: bool = False) -> bool:
    """Whether spilled events wait on the intake queue. Unknown (SQS unreachable) counts as waiting:
    a follow-up held is a message late, one sent past a STOP is a message that must never be.
    `fresh`: read the queue now, never an answer of the last REPLAY_CHECK_SECONDS (a send)."""
    url = settings().intake_queue_url
    if not url:
        return False
    seen = _replay_seen.get(url)
    if seen and not fresh and now - seen[0] < REPLAY_CHECK_SECONDS:
        return seen[1]
    names = [
        "ApproximateNumberOfMessages",
        "ApproximateNumberOfMessagesNotVisible",
        "ApproximateNumberOfMessagesDelayed",
    ]
    try:
        attributes = sqs().get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
        pending = any(int(attributes.get(name, 0)) for name in names)
    except Exception as exc:
        logger.error("intake queue depth unknown: follow-ups held", extra={"error": type(exc).__name__})
        pending = True
    _replay_seen[url] = (now, pending)
    return pending
