"""The AWS side of the local stack, in a moto server: the template's queues (with their redrive
policies) and secrets, and the pollers that deliver SQS batches to functions as Lambda's event
source mappings do.

Lambda's SQS poller, as reproduced here: up to BatchSize messages per invocation; with
ReportBatchItemFailures it deletes the records not named in `batchItemFailures`; when the handler
raises (or times out) it deletes nothing; what is not deleted comes back after the queue's
visibility timeout, and SQS moves a message to the dead-letter queue once it has been received
maxReceiveCount times (moto applies the RedrivePolicy on receive, as SQS does).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from unittest import mock

from local.runtime import Invocation, Log, Worker
from local.template import ACCOUNT, REGION, Resolver, SqsSource, Stack

MOTO_KEY = "local"  # moto takes any access key id and secret key: nothing to keep secret
QUEUE_ATTRIBUTES = (
    "DelaySeconds",
    "MaximumMessageSize",
    "MessageRetentionPeriod",
    "ReceiveMessageWaitTimeSeconds",
    "VisibilityTimeout",
    "FifoQueue",
    "ContentBasedDeduplication",
)


class Moto:
    """A moto server on a free loopback port, for SQS, Secrets Manager and DynamoDB."""

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        # http.server binds with socket.getfqdn(host), a reverse DNS lookup that can hang for a minute
        # on a machine without DNS; the loopback address needs none.
        with mock.patch("socket.getfqdn", lambda name="": name or "localhost"):
            self.server.start()
        host, port = self.server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"

    def client(self, service: str) -> Any:
        import boto3
        from botocore.config import Config

        client: Any = boto3.client(  # type: ignore[call-overload]
            service,
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=MOTO_KEY,
            aws_secret_access_key=MOTO_KEY,
            config=Config(retries={"max_attempts": 2, "mode": "standard"}, read_timeout=30),
        )
        return client

    def stop(self) -> None:
        self.server.stop()


@dataclass(slots=True)
class Queue:
    logical_id: str
    name: str
    url: str
    arn: str
    visibility_timeout: int
    template_visibility_timeout: int | None
    dead_letter: str | None = None  # logical id
    max_receive_count: int | None = None


def create_queues(stack: Stack, resolver: Resolver, sqs: Any, visibility_timeout: int | None) -> dict[str, Queue]:
    """The template's queues, dead-letter queues first, each as the template sets it; locally the
    visibility timeout is shortened (when given) so retries and the dead-letter queue show within seconds."""
    queues: dict[str, Queue] = {}
    for logical_id in stack.queues:
        props = resolver.resolve(stack.resources[logical_id].get("Properties", {}) or {})
        name = props.get("QueueName") or f"leadflow-{logical_id}" + (".fifo" if props.get("FifoQueue") else "")
        attributes = {
            key: str(props[key]).lower() if isinstance(props[key], bool) else str(props[key])
            for key in QUEUE_ATTRIBUTES
            if key in props
        }
        template_timeout = int(props["VisibilityTimeout"]) if "VisibilityTimeout" in props else None
        if visibility_timeout is not None:
            attributes["VisibilityTimeout"] = str(visibility_timeout)
        redrive = props.get("RedrivePolicy")
        dead_letter, max_receives = None, None
        if redrive:
            target = str(redrive["deadLetterTargetArn"])
            dead_letter = next((q.logical_id for q in queues.values() if q.arn == target), None)
            max_receives = int(redrive["maxReceiveCount"])
            attributes["RedrivePolicy"] = json.dumps({"deadLetterTargetArn": target, "maxReceiveCount": max_receives})
        url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
        arn = f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}"
        queues[logical_id] = Queue(
            logical_id,
            name,
            url,
            arn,
            int(attributes.get("VisibilityTimeout", 30)),
            template_timeout,
            dead_letter,
            max_receives,
        )
        resolver.refs[logical_id] = url
        resolver.attributes[(logical_id, "Arn")] = arn
        resolver.attributes[(logical_id, "QueueName")] = name
        resolver.attributes[(logical_id, "QueueUrl")] = url
    return queues


def create_secrets(stack: Stack, resolver: Resolver, secretsmanager: Any, values: dict[str, str]) -> dict[str, str]:
    """The template's secrets, holding the local value for each (by logical id) that has one; returns ARNs."""
    arns: dict[str, str] = {}
    for logical_id in stack.secrets:
        name = f"leadflow-{logical_id}"
        kwargs: dict[str, Any] = {"Name": name}
        if logical_id in values:
            kwargs["SecretString"] = values[logical_id]
        arn = str(secretsmanager.create_secret(**kwargs)["ARN"])
        arns[logical_id] = arn
        resolver.refs[logical_id] = arn
        resolver.attributes[(logical_id, "Id")] = arn
    return arns


def create_tables(stack: Stack, resolver: Resolver, dynamodb: Any) -> dict[str, str]:
    """The template's DynamoDB tables, with their keys (encryption and recovery are AWS's); returns names."""
    names: dict[str, str] = {}
    for logical_id in stack.tables:
        props = resolver.resolve(stack.resources[logical_id].get("Properties", {}) or {})
        name = props.get("TableName") or f"leadflow-{logical_id}"
        dynamodb.create_table(
            TableName=name,
            KeySchema=props["KeySchema"],
            AttributeDefinitions=props["AttributeDefinitions"],
            BillingMode="PAY_PER_REQUEST",
        )
        names[logical_id] = name
        resolver.refs[logical_id] = name
        resolver.attributes[(logical_id, "Arn")] = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{name}"
    return names


def sqs_event(messages: list[dict[str, Any]], queue: Queue) -> dict[str, Any]:
    """The event Lambda's SQS poller gives a function for one batch."""
    records = []
    for message in messages:
        attributes = dict(message.get("Attributes", {}))
        body = message["Body"]
        records.append(
            {
                "messageId": message["MessageId"],
                "receiptHandle": message["ReceiptHandle"],
                "body": body,
                "attributes": {
                    "ApproximateReceiveCount": attributes.get("ApproximateReceiveCount", "1"),
                    "SentTimestamp": attributes.get("SentTimestamp", str(int(time.time() * 1000))),
                    "SenderId": attributes.get("SenderId", "AIDAIENQZJOLO23YVJ4VO"),
                    "ApproximateFirstReceiveTimestamp": attributes.get(
                        "ApproximateFirstReceiveTimestamp", str(int(time.time() * 1000))
                    ),
                },
                "messageAttributes": _message_attributes(message.get("MessageAttributes", {})),
                "md5OfBody": message.get("MD5OfBody") or hashlib.md5(body.encode(), usedforsecurity=False).hexdigest(),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue.arn,
                "awsRegion": REGION,
            }
        )
    return {"Records": records}


def _message_attributes(attributes: dict[str, Any]) -> dict[str, Any]:
    """SQS API casing (StringValue) to the event's (stringValue)."""
    out = {}
    for name, value in attributes.items():
        out[name] = {
            "stringValue": value.get("StringValue"),
            "binaryValue": value.get("BinaryValue"),
            "stringListValues": [],
            "binaryListValues": [],
            "dataType": value.get("DataType"),
        }
    return out


@dataclass(slots=True)
class Poller:
    """One SQS event source: long-polls its queue and invokes the function with each batch."""

    source: SqsSource
    queue: Queue
    worker: Worker
    sqs: Any
    log: Log
    stop_event: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name=f"poll-{self.queue.logical_id}", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()

    def join(self, timeout: float) -> None:
        if self.thread:
            self.thread.join(timeout)

    def _run(self) -> None:
        while not self.stop_event.is_set():
            try:
                messages = self.sqs.receive_message(
                    QueueUrl=self.queue.url,
                    MaxNumberOfMessages=max(1, min(self.source.batch_size, 10)),
                    WaitTimeSeconds=1,
                    AttributeNames=["All"],
                    MessageAttributeNames=["All"],
                ).get("Messages", [])
            except Exception as exc:
                if self.stop_event.is_set():
                    return
                self.log.warn(f"receive from {self.queue.logical_id} failed: {exc}")
                self.stop_event.wait(1)
                continue
            if messages and not self.stop_event.is_set():
                self.deliver(messages)

    def deliver(self, messages: list[dict[str, Any]]) -> None:
        invocation = self.worker.invoke(sqs_event(messages, self.queue))
        failed = self.failures(invocation, messages)
        done = [m for m in messages if m["MessageId"] not in failed]
        if done:
            entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)]
            try:
                self.sqs.delete_message_batch(QueueUrl=self.queue.url, Entries=entries)
            except Exception as exc:
                self.log.warn(f"could not delete the batch's done messages on {self.queue.logical_id}: {exc}")
        self._log(invocation, len(messages), len(failed), messages)

    def failures(self, invocation: Invocation, messages: list[dict[str, Any]]) -> set[str]:
        """The message ids to leave on the queue: all when the handler failed, else those it reported."""
        every = {m["MessageId"] for m in messages}
        if not invocation.ok:
            return every
        if not self.source.report_failures:
            return set()
        result = invocation.result if isinstance(invocation.result, dict) else {}
        reported = result.get("batchItemFailures") or []
        ids = {str(item.get("itemIdentifier")) for item in reported if isinstance(item, dict)}
        if ids - every:  # an identifier that is not in the batch: Lambda treats the whole batch as failed
            return every
        return ids

    def _log(self, invocation: Invocation, total: int, failed: int, messages: list[dict[str, Any]]) -> None:
        receives = max(int(m.get("Attributes", {}).get("ApproximateReceiveCount", "1")) for m in messages)
        source = f"sqs {self.queue.logical_id} ({total} msg{'s' if total != 1 else ''})"
        detail = f"{total - failed} done"
        if failed:
            detail += f", {failed} back to the queue"
            if self.queue.max_receive_count:
                detail += f" (receive {receives}/{self.queue.max_receive_count})"
        if invocation.error:
            detail += f"; {invocation.error[:160]}"
        if invocation.cold_ms is not None:
            detail += f"; cold start {invocation.cold_ms:.0f} ms"
        status, style = (
            ("ok", "ok") if invocation.ok and not failed else ("fail", "error" if not invocation.ok else "warn")
        )
        self.log.invocation(self.worker.spec.short, source, status, invocation.ms, detail, style)


@dataclass(slots=True)
class DeadLetterWatch:
    """Logs when a message lands in a dead-letter queue (moto moves it there on a receive)."""

    queues: dict[str, Queue]
    sqs: Any
    log: Log
    depth: dict[str, int] = field(default_factory=dict)

    def check(self) -> None:
        for queue in self.queues.values():
            if queue.dead_letter is None:
                continue
            dlq = self.queues[queue.dead_letter]
            try:
                attributes = self.sqs.get_queue_attributes(
                    QueueUrl=dlq.url, AttributeNames=["ApproximateNumberOfMessages"]
                )
                depth = int(attributes["Attributes"]["ApproximateNumberOfMessages"])
            except Exception:  # noqa: S112  # nosec B112 # the next check, a second later, tries again
                continue
            before = self.depth.get(dlq.logical_id, 0)
            if depth > before:
                self.log.warn(
                    f"{depth - before} message(s) moved from {queue.logical_id} to {dlq.logical_id} "
                    f"after {queue.max_receive_count} receives (depth now {depth})"
                )
            self.depth[dlq.logical_id] = depth
