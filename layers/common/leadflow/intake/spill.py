"""Nothing lost: a verified event that Redis cannot take now goes to the intake queue (SQS), and the
webhook function replays it from there once Redis is back.

The message keeps the raw body bytes, so the replay parses exactly what was verified and derives the
same de-duplication ids: replaying twice, or replaying an event that was half recorded, changes
nothing more. Replays skip the signature and the 5-minute window, both checked on receipt.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import math
from dataclasses import dataclass
from typing import Any

from leadflow.config import settings
from leadflow.intake.events import Malformed
from leadflow.jobs import sqs_config

VERSION = 1


class SpillFailed(Exception):
    """The intake queue did not take the event either."""


@dataclass(frozen=True, slots=True)
class Delivery:
    """One verified request: which route, its raw body, when it arrived, and its de-duplication id."""

    route: str
    body: bytes
    received_at: float
    dedupe_id: str
    location_hint: str

    def to_json(self) -> str:
        message: dict[str, Any] = {
            "v": VERSION,
            "route": self.route,
            "received_at": self.received_at,
            "dedupe_id": self.dedupe_id,
            "location_id": self.location_hint,
        }
        try:
            message["body"] = self.body.decode()
        except UnicodeDecodeError:
            message["body_b64"] = base64.b64encode(self.body).decode()
        return json.dumps(message, ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str) -> Delivery:
        try:
            message = json.loads(raw)
            body = message["body"].encode() if "body" in message else base64.b64decode(message["body_b64"])
            received_at = float(message["received_at"])
            if not math.isfinite(received_at):
                raise ValueError("received_at is not finite")
            return cls(
                route=str(message["route"]),
                body=body,
                received_at=received_at,
                dedupe_id=str(message["dedupe_id"]),
                location_hint=str(message["location_id"]),
            )
        except (ValueError, KeyError, TypeError, AttributeError, binascii.Error) as exc:
            raise Malformed(f"not a spilled intake event: {type(exc).__name__}") from None


@functools.cache
def sqs() -> Any:
    import boto3

    return boto3.client("sqs", config=sqs_config())


def spill(delivery: Delivery) -> None:
    url = settings().intake_queue_url
    if not url:
        raise SpillFailed("INTAKE_QUEUE_URL is not set")
    try:
        sqs().send_message(QueueUrl=url, MessageBody=delivery.to_json())
    except Exception as exc:  # botocore's errors, network trouble, a message too large: all mean "not stored"
        raise SpillFailed(f"{type(exc).__name__}: {str(exc)[:120]}") from exc
