"""Helpers for the webhook tests: keys generated here, signers, Function URL and SQS events built
from tests/events/, moto SQS, and a fresh webhook handler. (No tests of its own.)"""

from __future__ import annotations

import base64
import functools
import json
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from tests.helpers import load_app, load_event

LOCATION = "loc-1"
WORKFLOW_TOKEN = "wf-" + "7" * 40


@functools.cache
def ed25519_private() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


@functools.cache
def rsa_private() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=4096)  # GHL's legacy key size


def public_pem(key: Any) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def public_spki_base64(key: Any) -> str:
    """The form GHL publishes its key in: base64 DER SubjectPublicKeyInfo, no PEM armour."""
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode()


def sign_ed25519(body: bytes, key: ed25519.Ed25519PrivateKey | None = None) -> str:
    return base64.b64encode((key or ed25519_private()).sign(body)).decode()


def sign_rsa(body: bytes) -> str:
    return base64.b64encode(rsa_private().sign(body, padding.PKCS1v15(), hashes.SHA256())).decode()


@functools.cache
def signing_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def standard_headers(body: bytes, msg_id: str, at: float | None = None, secret: str | None = None) -> dict[str, str]:
    from standardwebhooks.webhooks import Webhook

    when = datetime.fromtimestamp(time.time() if at is None else at, UTC)
    signature = Webhook(secret or signing_secret()).sign(msg_id, when, body.decode())
    return {"webhook-id": msg_id, "webhook-timestamp": str(int(when.timestamp())), "webhook-signature": signature}


def iso(at: float | None = None) -> str:
    return datetime.fromtimestamp(time.time() if at is None else at, UTC).isoformat(timespec="milliseconds")


def ghl_body(name: str, *, at: float | None = None, **changes: Any) -> bytes:
    """A GHL fixture (tests/events/ghl/<name>.json) timestamped now, with top-level changes."""
    payload = load_event(f"ghl/{name}")
    payload["timestamp"] = iso(at).replace("+00:00", "Z")
    for key, value in changes.items():
        if value is None:
            payload.pop(key, None)
        else:
            payload[key] = value
    return json.dumps(payload).encode()


def function_url_event(
    path: str,
    body: bytes,
    headers: dict[str, str] | None = None,
    *,
    method: str = "POST",
    base64_body: bool = False,
    query: dict[str, str] | None = None,
) -> dict[str, Any]:
    event = load_event("function_url")
    event["rawPath"] = event["requestContext"]["http"]["path"] = path
    event["requestContext"]["http"]["method"] = method
    event["headers"].update({k.lower(): v for k, v in (headers or {}).items()})
    event["queryStringParameters"] = query
    event["rawQueryString"] = "&".join(f"{k}={v}" for k, v in (query or {}).items())
    event["isBase64Encoded"] = base64_body
    event["body"] = base64.b64encode(body).decode() if base64_body else body.decode()
    return event


def ghl_event(body: bytes, *, signature: str | None = "ed25519", **kwargs: Any) -> dict[str, Any]:
    headers = {}
    if signature == "ed25519":
        headers["x-ghl-signature"] = sign_ed25519(body)
    elif signature == "rsa":
        headers["x-wh-signature"] = sign_rsa(body)
    return function_url_event("/webhooks/ghl", body, headers, **kwargs)


def activity_event(payload: Any, msg_id: str | None = None, **kwargs: Any) -> dict[str, Any]:
    body = json.dumps(payload).encode()
    headers = standard_headers(body, msg_id or "msg_" + secrets.token_hex(8))
    return function_url_event("/webhooks/activity", body, headers, **kwargs)


def workflow_event(payload: Any, token: str | None = WORKFLOW_TOKEN) -> dict[str, Any]:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return function_url_event("/webhooks/workflow", json.dumps(payload).encode(), headers)


def sqs_intake_event(bodies: list[str]) -> dict[str, Any]:
    template = load_event("sqs_intake")["Records"][0]
    records = []
    for i, body in enumerate(bodies):
        record = json.loads(json.dumps(template))
        record["messageId"] = f"059f36b4-87a3-44ab-83d2-{i:012d}"
        record["body"] = body
        records.append(record)
    return {"Records": records}


def reply(response: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    return response["statusCode"], json.loads(response["body"])


def lead(contact_id: str, location: str = LOCATION) -> Any:
    from leadflow.lead_state import LeadStore

    return LeadStore().load(location, contact_id)


@dataclass
class Intake:
    """The webhook handler under test, with its SQS client and queues."""

    app: Any
    context: Any
    sqs: Any
    intake_url: str
    followup_url: str

    def __call__(self, event: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        return reply(self.app.lambda_handler(event, self.context))

    def jobs(self) -> list[dict[str, Any]]:
        """The follow-up jobs on the follow-up queue now (bodies), write-backs (`"kind": "sync"`) aside."""
        bodies: list[dict[str, Any]] = []
        while got := self.sqs.receive_message(QueueUrl=self.followup_url, MaxNumberOfMessages=10).get("Messages"):
            bodies += [json.loads(m["Body"]) for m in got]
        return [body for body in bodies if body.get("kind") != "sync"]

    def spilled(self) -> list[str]:
        bodies = []
        while True:
            got = self.sqs.receive_message(QueueUrl=self.intake_url, MaxNumberOfMessages=10).get("Messages", [])
            if not got:
                return bodies
            bodies += [m["Body"] for m in got]


def clear_intake_caches() -> None:
    from leadflow import ghl
    from leadflow.intake import service, spill, verify

    service._store_for.cache_clear()
    spill.sqs.cache_clear()
    ghl.http.cache_clear()
    verify.ed25519_key.cache_clear()
    verify.rsa_key.cache_clear()


@pytest.fixture(name="intake")
def intake_fixture(redis_url: str, lambda_context: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Intake]:
    """The webhook function against the tests' redis-server and moto SQS, with generated keys."""
    import boto3
    from moto import mock_aws

    from leadflow import config, redis_client

    monkeypatch.setenv("GHL_WEBHOOK_PUBLIC_KEY", public_pem(ed25519_private()))
    monkeypatch.setenv("WEBHOOK_SIGNING_SECRET", signing_secret())
    monkeypatch.setenv("WORKFLOW_WEBHOOK_TOKEN", WORKFLOW_TOKEN)
    with mock_aws():
        client = boto3.client("sqs", region_name="us-east-1")
        intake_url = client.create_queue(QueueName="leadflow-intake")["QueueUrl"]
        followup_url = client.create_queue(QueueName="leadflow-followups")["QueueUrl"]
        monkeypatch.setenv("INTAKE_QUEUE_URL", intake_url)
        monkeypatch.setenv("FOLLOWUP_QUEUE_URL", followup_url)
        config.settings.cache_clear()
        redis_client.cache.cache_clear()
        clear_intake_caches()
        try:
            from leadflow import jobs

            jobs.sqs.cache_clear()
        except (ImportError, AttributeError):
            pass
        yield Intake(load_app("webhook"), lambda_context, client, intake_url, followup_url)
        clear_intake_caches()
