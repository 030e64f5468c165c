"""`leadflow` (or `python -m leadflow`): a small command line for users.

    leadflow send-webhook ghl|activity|workflow [--url URL] [--file BODY.json] ...   a signed test webhook
    leadflow score FILE                                                             score activity_data, locally
    leadflow show LEAD_ID [--api URL] [--token T]                                   a lead's score and history
    leadflow stats [--api URL] [--token T]                                          follow-up statistics

Without --url/--api, --token, --private-key or --secret it uses the local stack (`make dev`): its
URL and keys under `.local-stack/`. Imports are lazy: the Lambda layer carries this module but never
needs `rich` (a dev dependency), `httpx` or `jwt` unless a command runs.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

STATE_DIR = Path(os.environ.get("LEADFLOW_LOCAL_STATE", ".local-stack"))
LOCAL_URL = "http://127.0.0.1:3000"
LOCAL_ISSUER = "https://leadflow.local/"
LOCAL_AUDIENCE = "leadflow-local"


# ---------------------------------------------------------------------------------------------
# Signing, as each sender does it (also used by the local demo, the end-to-end tests and the bench)


def sign_ghl(body: bytes, private_key_pem: bytes) -> dict[str, str]:
    """GHL's headers for a body: Ed25519 over the raw bytes, base64, in X-GHL-Signature."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = serialization.load_pem_private_key(private_key_pem, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError("the GHL private key must be an Ed25519 key (PEM)")
    return {"content-type": "application/json", "x-ghl-signature": base64.b64encode(key.sign(body)).decode()}


def sign_activity(
    body: bytes, secret: str, message_id: str | None = None, at: datetime | None = None
) -> dict[str, str]:
    """Standard Webhooks headers (webhook-id, webhook-timestamp, webhook-signature) for a body."""
    from standardwebhooks.webhooks import Webhook

    message_id = message_id or f"msg_{uuid.uuid4().hex}"
    at = at or datetime.now(UTC)
    signature = Webhook(secret).sign(message_id, at, body.decode())
    return {
        "content-type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signature,
    }


def workflow_headers(token: str) -> dict[str, str]:
    return {"content-type": "application/json", "authorization": f"Bearer {token}"}


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def ghl_event(kind: str, location_id: str, contact_id: str, **fields: Any) -> dict[str, Any]:
    """A GHL webhook body of `kind` (ContactCreate, InboundMessage, ...) with a fresh webhookId and timestamp."""
    body: dict[str, Any] = {"type": kind, "locationId": location_id}
    body["id" if kind.startswith("Contact") else "contactId"] = contact_id
    body |= fields
    body.setdefault("webhookId", str(uuid.uuid4()))
    body.setdefault("timestamp", now_iso())
    return body


def activity_event(location_id: str, contact_id: str, signal: str, **meta: Any) -> dict[str, Any]:
    return {
        "type": "activity",
        "location_id": location_id,
        "contact_id": contact_id,
        "signal": signal,
        "occurred_at": now_iso(),
        "meta": meta,
    }


# ---------------------------------------------------------------------------------------------
# The local stack's defaults


def _local(name: str) -> Path:
    return STATE_DIR / name


def local_url() -> str:
    try:
        return str(json.loads(_local("stack.json").read_text())["api_url"])
    except (OSError, ValueError, KeyError):
        return LOCAL_URL


def local_secret(name: str) -> str | None:
    try:
        value = json.loads(_local("secrets.json").read_text()).get(name)
    except (OSError, ValueError):
        return None
    return str(value) if value else None


def local_token() -> str | None:
    """A short-lived JWT signed with the local stack's key, when there is one."""
    path = _local("jwt-private.pem")
    if not path.exists():
        return None
    import jwt

    now = int(time.time())
    claims = {
        "iss": LOCAL_ISSUER,
        "aud": LOCAL_AUDIENCE,
        "sub": "leadflow-cli",
        "scope": "leads",
        "iat": now,
        "exp": now + 3600,
    }
    return jwt.encode(claims, path.read_bytes(), algorithm="RS256", headers={"kid": "local"})


class CliError(Exception):
    """A problem the user can fix; printed without a traceback."""


# ---------------------------------------------------------------------------------------------
# Commands


def _send_webhook(args: argparse.Namespace, console: Any) -> int:
    import httpx

    kind = args.kind
    base = (args.url or local_url()).rstrip("/")
    url = base if base.endswith(f"/webhooks/{kind}") else f"{base}/webhooks/{kind}"
    if args.file:
        payload = json.loads(Path(args.file).read_text())
        if kind == "ghl" and isinstance(payload, dict) and not args.keep_timestamp:
            payload |= {"timestamp": now_iso(), "webhookId": str(uuid.uuid4())}  # inside GHL's window
    elif kind == "ghl":
        payload = ghl_event(args.type, args.location_id, args.contact_id, firstName="Test", phone="+16175550100")
    elif kind == "activity":
        payload = activity_event(args.location_id, args.contact_id, args.signal)
    else:
        payload = {
            "contact_id": args.contact_id,
            "location": {"id": args.location_id},
            "customData": {"signal": args.signal, "occurred_at": now_iso()},
        }
    body = json.dumps(payload).encode()
    if kind == "ghl":
        key_path = Path(args.private_key) if args.private_key else _local("ghl-private.pem")
        if not key_path.exists():
            raise CliError(
                "ghl webhooks need --private-key (an Ed25519 PEM); the local stack's is .local-stack/ghl-private.pem"
            )
        headers = sign_ghl(body, key_path.read_bytes())
    elif kind == "activity":
        secret = args.secret or os.environ.get("WEBHOOK_SIGNING_SECRET") or local_secret("WEBHOOK_SIGNING_SECRET")
        if not secret:
            raise CliError("activity webhooks need --secret whsec_... (or WEBHOOK_SIGNING_SECRET)")
        headers = sign_activity(body, secret)
    else:
        token = args.token or os.environ.get("WORKFLOW_WEBHOOK_TOKEN") or local_secret("WORKFLOW_WEBHOOK_TOKEN")
        if not token:
            raise CliError("workflow webhooks need --token (or WORKFLOW_WEBHOOK_TOKEN)")
        headers = workflow_headers(token)
    started = time.perf_counter()
    try:
        reply = httpx.post(url, content=body, headers=headers, timeout=30)
    except httpx.HTTPError as exc:
        raise CliError(f"POST {url}: {exc} (is the stack running? `make dev`)") from None
    ms = (time.perf_counter() - started) * 1000
    style = "green" if reply.status_code < 300 else "red"
    console.print(f"POST {url} -> [{style}]{reply.status_code}[/{style}] in {ms:.0f} ms")
    console.print_json(reply.text) if _is_json(reply.text) else console.print(reply.text)
    return 0 if reply.status_code < 300 else 1


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def _score(args: argparse.Namespace, console: Any) -> int:
    from leadflow.errors import LeadflowError
    from leadflow.leads import score_activity

    data = json.loads(Path(args.file).read_text())
    if isinstance(data, dict) and "activity_data" in data:
        data = data["activity_data"]
    try:
        score = score_activity(args.lead_id, data).to_json()
    except LeadflowError as exc:
        raise CliError(f"{args.file}: {exc.message}") from None
    if args.json:
        console.print_json(json.dumps(score))
    else:
        _print_score(console, score)
    return 0


def _api(args: argparse.Namespace) -> tuple[str, dict[str, str], dict[str, str]]:
    token = args.token or os.environ.get("LEADFLOW_TOKEN") or local_token()
    if not token:
        raise CliError("the HTTP API needs --token (a JWT; `make token` prints one for the local stack)")
    params = {"location_id": args.location_id} if args.location_id else {}
    return (args.api or local_url()).rstrip("/"), {"authorization": f"Bearer {token}"}, params


def _get(url: str, headers: dict[str, str], params: dict[str, str]) -> tuple[int, Any]:
    import httpx

    try:
        reply = httpx.get(url, headers=headers, params=params, timeout=30)
    except httpx.HTTPError as exc:
        raise CliError(f"GET {url}: {exc} (is the stack running? `make dev`)") from None
    body = reply.json() if _is_json(reply.text) else reply.text
    return reply.status_code, body


def _show(args: argparse.Namespace, console: Any) -> int:
    base, headers, params = _api(args)
    status, score = _get(f"{base}/leads/{args.lead_id}/score", headers, params)
    _, history = _get(f"{base}/leads/{args.lead_id}/messages", headers, params)
    if args.json:
        console.print_json(json.dumps({"score": score, "messages": history}))
        return 0 if status == 200 else 1
    if status == 200:
        _print_score(console, score)
    else:
        console.print(f"[red]score: {status}[/red] {score}")
    messages = history.get("messages", []) if isinstance(history, dict) else []
    _print_messages(console, messages)
    return 0 if status == 200 else 1


def _stats(args: argparse.Namespace, console: Any) -> int:
    base, headers, params = _api(args)
    status, stats = _get(f"{base}/followups/stats", headers, params)
    if args.json or status != 200 or not isinstance(stats, dict):
        console.print_json(json.dumps(stats))
        return 0 if status == 200 else 1
    from rich.table import Table

    table = Table(title="follow-up stats", show_header=False)
    for key, value in stats.items():
        shown = ", ".join(f"{k} {v}" for k, v in value.items()) if isinstance(value, dict) else str(value)
        table.add_row(key, shown)
    console.print(table)
    return 0


def _print_score(console: Any, score: dict[str, Any]) -> None:
    from rich.table import Table

    level = score.get("intent_level", "")
    color = {"urgent": "bold red", "hot": "red", "warm": "yellow", "cold": "blue"}.get(level, "white")
    window = score.get("optimal_contact_window") or ["?", "?"]
    console.print(
        f"[bold]{score.get('lead_id')}[/bold]: likelihood [bold]{score.get('likelihood_score')}[/bold] "
        f"[{color}]{level}[/{color}], confidence {score.get('confidence')}, "
        f"contact {window[0]}:00-{window[1]}:00 {score.get('timezone')} by {score.get('recommended_channel')}"
    )
    table = Table("signal", "events", "hours since", "trend", "points")
    for signal in score.get("key_signals", []):
        table.add_row(
            str(signal["type"]),
            str(signal["frequency"]),
            f"{signal['recency_hours']:.1f}",
            str(signal["trend"]),
            f"{signal['points']:.1f}",
        )
    console.print(table)
    if score.get("recommended_message"):
        console.print(f"message: {score['recommended_message']}")


def _print_messages(console: Any, messages: list[dict[str, Any]]) -> None:
    from rich.table import Table

    if not messages:
        console.print("no messages")
        return
    table = Table("at", "channel", "status", "reason", "text", title="messages, newest first")
    for message in messages:
        table.add_row(
            str(message.get("at", "")),
            str(message.get("channel", "")),
            str(message.get("status", "")),
            str(message.get("reason") or ""),
            str(message.get("body") or ""),
        )
    console.print(table)


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="leadflow", description="leadflow: signed test webhooks, scores, history, stats."
    )
    commands = root.add_subparsers(dest="command", required=True)

    send = commands.add_parser("send-webhook", help="send a signed test webhook")
    send.add_argument("kind", choices=["ghl", "activity", "workflow"])
    send.add_argument("--url", help="the webhook base URL or full route (default: the local stack)")
    send.add_argument("--file", help="the JSON body to send (default: a small sample event)")
    send.add_argument("--private-key", help="ghl: Ed25519 private key, PEM (default: .local-stack/ghl-private.pem)")
    send.add_argument(
        "--secret", help="activity: the whsec_... secret (default: WEBHOOK_SIGNING_SECRET, the local one)"
    )
    send.add_argument("--token", help="workflow: the bearer token (default: WORKFLOW_WEBHOOK_TOKEN, the local one)")
    send.add_argument("--type", default="ContactCreate", help="ghl: the event type of the sample body")
    send.add_argument("--contact-id", default="cli-contact-1")
    send.add_argument("--location-id", default="default")
    send.add_argument("--signal", default="pricing_tool_usage", help="activity/workflow: the sample's signal")
    send.add_argument("--keep-timestamp", action="store_true", help="ghl --file: send timestamp/webhookId as written")

    score = commands.add_parser("score", help="score a JSON file of activity_data here, no server needed")
    score.add_argument("file")
    score.add_argument("--lead-id", default="lead")
    score.add_argument("--json", action="store_true")

    for name, text in (("show", "a lead's score and message history"), ("stats", "follow-up statistics")):
        command = commands.add_parser(name, help=text)
        if name == "show":
            command.add_argument("lead_id")
        command.add_argument("--api", help="the HTTP API URL (default: the local stack)")
        command.add_argument("--token", help="a JWT for the HTTP API (default: LEADFLOW_TOKEN, or the local key)")
        command.add_argument("--location-id")
        command.add_argument("--json", action="store_true")
    return root


def main(argv: list[str] | None = None) -> int:
    from rich.console import Console

    args = parser().parse_args(argv)
    console = Console()
    handlers = {"send-webhook": _send_webhook, "score": _score, "show": _show, "stats": _stats}
    try:
        return handlers[args.command](args, console)
    except CliError as exc:
        Console(stderr=True).print(f"[red]error:[/red] {exc}")
        return 2
    except (OSError, ValueError) as exc:
        Console(stderr=True).print(f"[red]error:[/red] {type(exc).__name__}: {exc}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
