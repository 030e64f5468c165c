"""Intake end to end: verify, parse, record (one Lua call per event), fast path; spill when Redis is
down; replay spilled events. `handle_request` serves the Function URL, `replay` the intake queue.

Replies (the contract): 200 {"status": "accepted" | "duplicate" | "ignored"} (plus `rejected` for
the unusable events of a batch); 401 bad signature or token, or a timestamp outside its window
(GHL: up to 2 hours old, 5 minutes ahead; activity: 5 minutes either way); 400 malformed; 413 over
256 KiB; 422 an unusable event; 429 with Retry-After only when the event could be stored nowhere.
Nothing raises out of `handle_request`.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from leadflow import writeback
from leadflow.config import Settings, settings
from leadflow.errors import InvalidInput, LeadflowError, StoreUnavailable
from leadflow.intake import activity, ghl, oauth, workflow
from leadflow.intake.contacts import fill_timezone
from leadflow.intake.events import Action, BatchRejected, Malformed, Parsed, identifier
from leadflow.intake.spill import Delivery, SpillFailed, spill
from leadflow.intake.verify import SignatureError, verify_bearer, verify_ghl, verify_standard
from leadflow.lead_state import Event, LeadStore, Recorded
from leadflow.observability import count, logger, metrics
from leadflow.own_messages import any_own
from leadflow.redis_client import Cache, cache

MAX_BODY = 256 * 1024
RETRY_AFTER_SECONDS = 30
ROUTES = {"/webhooks/ghl": "ghl", "/webhooks/activity": "activity", "/webhooks/workflow": "workflow"}
JSON_HEADERS = {"content-type": "application/json"}
HTML_HEADERS = {"content-type": "text/html; charset=utf-8", "cache-control": "no-store"}
CALLBACK_PATH = "/oauth/callback"


@dataclass(slots=True)
class Reply:
    status: int
    body: dict[str, Any] | str  # JSON, or an HTML page (the OAuth callback's)
    headers: dict[str, str] = field(default_factory=dict)

    def to_function_url(self) -> dict[str, Any]:
        if isinstance(self.body, str):
            return {"statusCode": self.status, "headers": HTML_HEADERS | self.headers, "body": self.body}
        return {
            "statusCode": self.status,
            "headers": JSON_HEADERS | self.headers,
            "body": json.dumps(self.body, separators=(",", ":")),
        }


@functools.cache
def _store_for(client: Cache) -> LeadStore:
    return LeadStore(client)


def store() -> LeadStore:
    """The lead store over the process's Redis client (a new client after tests clear its cache)."""
    return _store_for(cache())


# ---------------------------------------------------------------------------------------------
# The Function URL request


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    query: dict[str, str]


def read_request(event: Mapping[str, Any]) -> Request | Reply:
    """A Function URL (payload 2.0) event into a request, decoding a base64 body; or the error reply."""
    context = event.get("requestContext")
    http = context.get("http") if isinstance(context, dict) else None
    http = http if isinstance(http, dict) else {}
    method = str(http.get("method") or "").upper()
    path = event.get("rawPath") or http.get("path") or ""
    path = "/" + "/".join(part for part in str(path).split("/") if part)  # "//webhooks/ghl/" too
    raw_headers = event.get("headers")
    headers: dict[str, str] = {}
    if isinstance(raw_headers, dict):
        headers = {str(k).lower(): v for k, v in raw_headers.items() if isinstance(v, str)}
    raw_query = event.get("queryStringParameters")
    query = {str(k): v for k, v in raw_query.items() if isinstance(v, str)} if isinstance(raw_query, dict) else {}
    raw_body = event.get("body")
    if raw_body is None:
        raw_body = ""
    if not isinstance(raw_body, str):
        return Reply(400, {"message": "body must be text"})
    if len(raw_body) > MAX_BODY * 4 // 3 + 4:
        return Reply(413, {"message": "body over 256 KiB"})
    if event.get("isBase64Encoded") is True:
        try:
            body = base64.b64decode(raw_body, validate=True)
        except (binascii.Error, ValueError):
            return Reply(400, {"message": "body is not valid base64"})
    else:
        try:
            body = raw_body.encode()
        except UnicodeEncodeError:
            return Reply(400, {"message": "body is not valid UTF-8"})
    if len(body) > MAX_BODY:
        return Reply(413, {"message": "body over 256 KiB"})
    return Request(method, path, headers, body, query)


def handle_request(event: Any, now: float | None = None) -> Reply:
    """One Function URL request, start to end. Never raises; never answers 5xx."""
    started = time.perf_counter()
    now = time.time() if now is None else now
    if not isinstance(event, dict):
        return Reply(400, {"message": "not a Function URL request"})
    request = read_request(event)
    if isinstance(request, Reply):
        return request
    if request.path == CALLBACK_PATH:
        if request.method != "GET":
            return Reply(405, {"message": "use GET"}, {"allow": "GET"})
        return oauth.callback(request.query)
    route = ROUTES.get(request.path)
    if route is None:
        return Reply(404, {"message": "no such route"})
    if request.method != "POST":
        return Reply(405, {"message": "use POST"}, {"allow": "POST"})
    try:
        query_location = identifier(request.query.get("location_id"), "location_id")
    except InvalidInput as exc:
        return Reply(exc.status, {"message": exc.message})
    try:
        config = settings()
        hint = config.location(query_location)
        verified_id = _verify(route, request, config)
    except SignatureError as exc:
        metrics.add_metric(name="SignatureFailures", unit=MetricUnit.Count, value=1)
        _finish(route, route, "", Counter({"unauthorized": 1}), started, reason=str(exc))
        return Reply(401, {"message": "invalid or missing signature"})
    except Exception:  # a secret that cannot be fetched, a broken configuration: the sender should retry
        logger.exception("cannot verify webhook now", extra={"route": route})
        return _throttled(route, started)
    delivery = Delivery(route, request.body, now, verified_id or "", hint)
    try:
        return _process(delivery, config, now, started)
    except Exception:  # a bug must not lose a verified event: keep it for the replay
        logger.exception("intake failed after verification; spilling", extra={"route": route})
        return _spill_or_throttle(delivery, route, 1, started)


def _verify(route: str, request: Request, config: Settings) -> str | None:
    if route == "ghl":
        verify_ghl(request.body, request.headers, config.ghl_webhook_public_key, config.ghl_webhook_rsa_public_key)
        return None
    if route == "activity":
        return verify_standard(request.body, request.headers, config.signing_secret())
    verify_bearer(request.headers, config.workflow_token())
    return None


def _process(delivery: Delivery, config: Settings, now: float, started: float) -> Reply:
    route = delivery.route
    try:
        payload = json.loads(delivery.body)
    except (ValueError, RecursionError):
        _finish(route, route, "", Counter({"malformed": 1}), started)
        return Reply(400, {"message": "body is not valid JSON"})
    try:
        parsed = parse(delivery, payload, config, now, replay=False)
    except SignatureError as exc:
        metrics.add_metric(name="SignatureFailures", unit=MetricUnit.Count, value=1)
        _finish(route, route, "", Counter({"unauthorized": 1}), started, reason=str(exc))
        return Reply(401, {"message": str(exc)})
    except BatchRejected as exc:
        _finish(route, route, "", Counter({"rejected": len(exc.rejected)}), started)
        return Reply(422, {"message": exc.message, "rejected": exc.rejected})
    except LeadflowError as exc:
        outcome = "malformed" if exc.status == 400 else "rejected"
        _finish(route, _event_type(payload, route), "", Counter({outcome: 1}), started)
        return Reply(exc.status, {"message": exc.message})
    delivery = _with_id(delivery, parsed)
    try:
        outcomes = apply_delivery(delivery, parsed, config, now, started)
    except StoreUnavailable as exc:
        logger.warning("redis unavailable; spilling the event", extra={"route": route, "error": exc.message})
        return _spill_or_throttle(delivery, parsed.event_type, len(parsed.actions), started, parsed.rejected)
    if parsed.rejected:
        outcomes["rejected"] += len(parsed.rejected)
    if not parsed.actions and parsed.app is None:
        outcomes = Counter({"ignored": 1})
    location = _location(parsed, delivery)
    _finish(route, parsed.event_type, location, outcomes, started, actions=parsed.actions, rejected=parsed.rejected)
    body: dict[str, Any] = {"status": _status(outcomes)}
    if parsed.rejected:
        body["rejected"] = parsed.rejected
    return Reply(200, body)


def _status(outcomes: Counter[str]) -> str:
    if outcomes["accepted"]:
        return "accepted"
    if outcomes["duplicate"]:
        return "duplicate"
    return "ignored"


def _with_id(delivery: Delivery, parsed: Parsed) -> Delivery:
    if delivery.dedupe_id or not parsed.actions:
        return delivery
    return Delivery(
        delivery.route, delivery.body, delivery.received_at, parsed.actions[0].event_id or "", delivery.location_hint
    )


def parse(delivery: Delivery, payload: Any, config: Settings, now: float, *, replay: bool) -> Parsed:
    if delivery.route == "ghl":
        return ghl.parse(
            payload,
            delivery.body,
            now=now,
            received_at=delivery.received_at,
            location_hint=delivery.location_hint,
            config=config,
            replay=replay,
        )
    if delivery.route == "activity":
        return activity.parse(
            payload,
            webhook_id=delivery.dedupe_id,
            received_at=delivery.received_at,
            location_hint=delivery.location_hint,
        )
    if delivery.route == "workflow":
        return workflow.parse(
            payload,
            event_id=workflow.dedupe_id(delivery.body, delivery.received_at),
            received_at=delivery.received_at,
            location_hint=delivery.location_hint,
        )
    raise Malformed(f"unknown route {delivery.route!r}")


# ---------------------------------------------------------------------------------------------
# Recording


def apply_delivery(delivery: Delivery, parsed: Parsed, config: Settings, now: float, started: float) -> Counter[str]:
    """Record a delivery's actions: outcome -> count. A delivery whose events took their location
    from the unsigned `?location_id` is first claimed for that location, so the same signed delivery
    under another `?location_id` is a duplicate, not another lead's event."""
    outcomes: Counter[str] = Counter()
    if parsed.app is not None:
        outcomes[oauth.apply_app_event(parsed.app)] += 1
        return outcomes
    hinted = parsed.hinted and delivery.dedupe_id
    if hinted and not store().claim_delivery(delivery.dedupe_id, delivery.location_hint):
        return Counter({"duplicate": len(parsed.actions)})
    return Counter(apply_all(parsed.actions, config, now))


def apply_all(actions: list[Action], config: Settings, now: float) -> list[str]:
    """Record actions in their order, each 'accepted', 'duplicate' or 'ignored': the consecutive
    plain ones (a batch of activity) in one pipelined round trip. Raises StoreUnavailable when Redis
    is down."""
    outcomes: list[str] = []
    plain: list[Action] = []
    for action in actions:
        if action.erase or action.unless_own_message:
            outcomes += record(plain, config, now)
            plain = []
            outcomes.append(_apply_special(action, config, now))
        else:
            plain.append(action)
    return outcomes + record(plain, config, now)


def apply(action: Action, config: Settings, now: float) -> str:
    """Record one action (see `apply_all`)."""
    return apply_all([action], config, now)[0]


def _apply_special(action: Action, config: Settings, now: float) -> str:
    """An erase (ContactDelete), or a message event that is ignored when it is leadflow's own."""
    leads = store()
    if action.erase:
        leads.erase(action.location_id, action.contact_id)
        return "accepted"
    if any_own(leads.cache, action.location_id, action.contact_id, action.unless_own_message):
        return "ignored"  # leadflow's own message: nobody took the conversation over
    return record([action], config, now)[0]


def record(actions: list[Action], config: Settings, now: float) -> list[str]:
    """Record plain actions (one script call each, pipelined), then per lead: its timezone when
    due, the fast path, and its write-back to GHL when due."""
    if not actions:
        return []
    leads = store()
    events = [_event(action) for action in actions]
    results = leads.record_many(events, now)
    latest: dict[str, dict[str, Recorded]] = {}
    for action, recorded in zip(actions, results, strict=True):
        if not recorded.duplicate:
            fill_timezone(leads, action, recorded.state, config, now)
        fast_path(action, recorded, now)  # a duplicate too: its first delivery may have stopped short of it
        latest.setdefault(action.location_id, {})[action.contact_id] = recorded
    for location_id, leads_now in latest.items():
        writeback.maybe_queue(location_id, leads_now, request_at=now)  # never raises
    return ["duplicate" if recorded.duplicate else "accepted" for recorded in results]


def _event(action: Action) -> Event:
    fields = action.fields()
    if action.pause_at_least is not None:
        fields["max:g:paused_until"] = repr(action.pause_at_least)  # never shortens a longer pause
    return Event(action.location_id, action.contact_id, action.signal, action.at, action.event_id, fields)


def fast_path(action: Action, recorded: Recorded, now: float) -> str | None:
    """Queue a follow-up at once when the lead qualifies (followup decides, under every guardrail).
    Never fails the webhook: the monitor catches the lead on its next run."""
    try:
        from leadflow.followup import queue_fast_path

        return queue_fast_path(
            action.location_id, action.contact_id, recorded.state, recorded.likelihood, action.signal, now
        )
    except Exception:
        logger.exception("fast path failed; the monitor will pick the lead up", extra={"location": action.location_id})
        return None


# ---------------------------------------------------------------------------------------------
# Spill and replay


def _spill_or_throttle(
    delivery: Delivery, event_type: str, events: int, started: float, rejected: list[dict[str, Any]] | None = None
) -> Reply:
    try:
        spill(delivery)
    except SpillFailed as exc:
        logger.error("event stored nowhere: asking the sender to retry", extra={"error": str(exc)})
        return _throttled(event_type, started)
    metrics.add_metric(name="EventsSpilled", unit=MetricUnit.Count, value=max(events, 1))
    _finish(delivery.route, event_type, delivery.location_hint, Counter({"spilled": max(events, 1)}), started)
    body: dict[str, Any] = {"status": "accepted"}
    if rejected:
        body["rejected"] = rejected
    return Reply(200, body)


def _throttled(event_type: str, started: float) -> Reply:
    _metric(event_type, Counter({"throttled": 1}))
    return Reply(429, {"message": "cannot store the event now; retry later"}, {"retry-after": str(RETRY_AFTER_SECONDS)})


def replay(message_body: str, now: float | None = None) -> Counter[str]:
    """Record one spilled delivery. StoreUnavailable propagates: the SQS message comes back later."""
    started = time.perf_counter()
    now = time.time() if now is None else now
    delivery = Delivery.from_json(message_body)
    config = settings()
    try:
        parsed = parse(delivery, json.loads(delivery.body), config, now, replay=True)
    except (LeadflowError, SignatureError, ValueError, RecursionError) as exc:
        logger.error("spilled event cannot be parsed; dropped", extra={"route": delivery.route, "error": str(exc)})
        return Counter({"malformed": 1})
    outcomes = apply_delivery(delivery, parsed, config, now, started)
    location = _location(parsed, delivery)
    _finish(delivery.route, parsed.event_type, location, outcomes, started, actions=parsed.actions, replayed=True)
    return outcomes


# ---------------------------------------------------------------------------------------------
# Logs and metrics: one line per request (and one per refused event); contact details and bodies never logged


def _event_type(payload: Any, route: str) -> str:
    if route == "ghl" and isinstance(payload, dict) and isinstance(payload.get("type"), str):
        return payload["type"][:64]
    return route


def _location(parsed: Parsed, delivery: Delivery) -> str:
    return parsed.actions[0].location_id if parsed.actions else delivery.location_hint


def _finish(
    route: str,
    event_type: str,
    location: str,
    outcomes: Counter[str],
    started: float,
    reason: str | None = None,
    *,
    actions: list[Action] | None = None,
    rejected: list[dict[str, Any]] | None = None,
    replayed: bool = False,
) -> None:
    """The request's log line, with how many of its events had each outcome, and its metrics."""
    extra: dict[str, Any] = {
        "route": route,
        "event_type": event_type,
        "location_id": location or None,
        "outcome": outcomes.most_common(1)[0][0] if outcomes else None,
        "outcomes": dict(outcomes),
        "replayed": replayed,
        "reason": reason,
        "latency_ms": round((time.perf_counter() - started) * 1000, 2),
    }
    if actions and len(actions) == 1:
        extra |= {"contact_id": actions[0].contact_id, "signal": actions[0].signal and actions[0].signal.value}
    logger.info("webhook request", extra=extra)
    for refused in rejected or []:
        reason = refused.get("message")
        logger.warning("webhook event refused", extra={"route": route, "index": refused.get("index"), "reason": reason})
    _metric(event_type, Counter({f"replayed_{k}": v for k, v in outcomes.items()}) if replayed else outcomes)


def _metric(event_type: str, outcomes: Counter[str]) -> None:
    """EventsReceived by event type and outcome."""
    for outcome, value in outcomes.items():
        if value:
            count("EventsReceived", value, event_type=event_type[:64] or "unknown", outcome=outcome)
