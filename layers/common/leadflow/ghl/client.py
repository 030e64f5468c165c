"""The GHL API client: `call`, the one request function every GHL call goes through (messages,
contacts, locations, tags, tasks, custom fields, tokens), and `send_message` on top of it.

A call takes the location's token (tokens.token_for), the endpoint's Version (endpoints), and a
place in the location's rate-limit window (limiter) before each attempt; it runs `before_post` right
before each request (the last chance to stop, and to record the attempt); it reads GHL's
X-RateLimit-* headers from each reply. Every wait of one call (the window, a 429's Retry-After,
backoff) comes out of one budget, `max_wait`, so a call's time is bounded: at most
`attempts * (connect + write + read timeouts) + max_wait`.

Made again within the call, only when that is safe: a request that certainly never reached GHL (a
connect error; a 429 once its wait is over), and for an idempotent endpoint also a 5xx or an unknown
outcome. A non-idempotent request whose outcome is unknown (a read timeout, a reset after the request
was written) is never repeated: GHL's send API has no idempotency key.
"""

from __future__ import annotations

import functools
import html
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from leadflow.config import settings
from leadflow.ghl import tokens
from leadflow.ghl.endpoints import SEND_MESSAGE, Endpoint, Timeout
from leadflow.ghl.errors import (
    DailyQuotaSpent,
    NotFound,
    NotInstalled,
    OutcomeUnknown,
    PermanentFailure,
    RateLimited,
    TransientFailure,
    Unauthorized,
)
from leadflow.ghl.limiter import Admission, Heard, RateLimiter, retry_after
from leadflow.observability import logger

if TYPE_CHECKING:  # httpx is imported by the first call, not at a function's init
    import httpx

MAX_ATTEMPTS = 3
MAX_WAIT = 10.0  # seconds one call may wait in all (the window, Retry-After, backoff) before giving up
TIMEOUT = Timeout(connect=3.0, read=10.0)


@functools.cache
def http() -> httpx.Client:
    import httpx

    return httpx.Client(timeout=_httpx_timeout(TIMEOUT))


def _httpx_timeout(limits: Timeout) -> httpx.Timeout:
    import httpx

    return httpx.Timeout(limits.read, connect=limits.connect)


def call(
    location_id: str,
    endpoint: Endpoint,
    *ids: str,
    json: Any = None,
    params: Mapping[str, str] | None = None,
    form: Mapping[str, str] | None = None,
    before_post: Callable[[], None] | None = None,
    timeout: Timeout | None = None,
    max_wait: float = MAX_WAIT,
    attempts: int = MAX_ATTEMPTS,
    limiter: RateLimiter | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Make `endpoint` (its path's placeholders filled with `ids`) for `location_id`, the resource
    GHL limits and whose token is used (`company:<id>` for an agency's own calls). Returns GHL's
    JSON object ({} when it sent none). `json` is a JSON body, `form` a form-encoded one.

    Raises NotInstalled (no token), DailyQuotaSpent, RateLimited or TransientFailure (GHL did not
    act), OutcomeUnknown (it may have), Unauthorized, NotFound or PermanentFailure (it refused)."""
    import httpx

    headers = {"Accept": "application/json"}
    if endpoint.version:
        headers["Version"] = endpoint.version
    token = None
    if endpoint.auth:
        token = tokens.token_for(location_id)
        if not token:
            raise NotInstalled(location_id)
        headers["Authorization"] = f"Bearer {token}"
    url = settings().ghl_api_base_url.rstrip("/") + endpoint.url_path(*ids)
    limits = _httpx_timeout(timeout or TIMEOUT)
    limiter = limiter or RateLimiter()
    deadline = limiter.clock() + max_wait  # every wait of the call shares it
    refreshed = False
    for attempt in range(1, attempts + 1):
        again = attempt < attempts
        admission = limiter.acquire(location_id, sleep, deadline)
        if before_post:
            before_post()
        try:
            response = http().request(
                endpoint.method, url, json=json, params=params, data=form, headers=headers, timeout=limits
            )
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:  # not a byte sent: retry
            if again and _backoff(limiter, attempt, deadline, sleep):
                continue
            raise TransientFailure(f"network: {type(exc).__name__}") from exc
        except httpx.HTTPError as exc:  # a read timeout, a reset, a protocol error: GHL may have acted
            if endpoint.idempotent and again and _backoff(limiter, attempt, deadline, sleep):
                continue
            raise OutcomeUnknown(f"outcome_unknown: {type(exc).__name__}") from exc
        heard = _heard(limiter, location_id, response, admission)
        status = response.status_code
        if status == 429:
            if heard.quota_until:
                raise DailyQuotaSpent(heard.quota_until, status, _json(response))
            if not again or limiter.clock() + heard.wait > deadline:
                raise RateLimited(status=status, body=_json(response))
            sleep(heard.wait)  # the limiter holds the location until then too, unless Redis failed
            continue
        if status >= 500:
            if endpoint.idempotent and again and _backoff(limiter, attempt, deadline, sleep):
                continue
            raise TransientFailure(f"ghl_{status}", status, _json(response))
        if status == 401 and endpoint.auth and again and not refreshed:  # refused unread: a new token, once
            refreshed = True
            fresh = tokens.token_for(location_id, refresh=True)
            if not fresh:  # the refresh was refused: the app must be installed again
                raise NotInstalled(location_id)
            if fresh != token:  # a private integration token has no newer one
                token, headers["Authorization"] = fresh, f"Bearer {fresh}"
                continue
        if status >= 400:
            raise _refused(response)
        return _json(response)
    raise AssertionError("unreachable: the last attempt returns or raises")


def send_message(
    location_id: str,
    contact_id: str,
    channel: str,
    body: str,
    subject: str | None = None,
    limiter: RateLimiter | None = None,
    sleep: Callable[[float], None] = time.sleep,
    before_post: Callable[[], None] = lambda: None,
) -> tuple[str, ...]:
    """Send through GHL's `POST /conversations/messages`; returns the ids GHL gave the message
    (`messageId`, and an email's `emailMessageId`, which its OutboundMessage webhook names).
    `before_post` runs right before each request, after any rate-limit wait: the last chance to stop
    (it raises) and to record the attempt. Never repeated once GHL may have the message."""
    payload = _payload(contact_id, channel, body, subject)
    data = call(location_id, SEND_MESSAGE, json=payload, before_post=before_post, limiter=limiter, sleep=sleep)
    many = data.get("messageIds")  # GMB sends answer with a list
    ids = [data.get("messageId"), data.get("emailMessageId"), *(many if isinstance(many, list) else [])]
    return tuple(i for i in ids if isinstance(i, str) and i)


def daily_quota_spent(location_id: str) -> bool:
    """GHL said the location's daily allowance is spent, and its day has not turned yet."""
    return RateLimiter().quota_until(location_id) is not None


def _payload(contact_id: str, channel: str, body: str, subject: str | None) -> dict[str, Any]:
    if channel == "email":
        paragraphs = "".join(f"<p>{html.escape(p)}</p>" for p in body.split("\n\n") if p.strip())
        return {"type": "Email", "contactId": contact_id, "subject": subject or "", "html": paragraphs}
    return {"type": "SMS", "contactId": contact_id, "message": body}


def _backoff(limiter: RateLimiter, attempt: int, deadline: float, sleep: Callable[[float], None]) -> bool:
    """Wait before another attempt, if the call's budget allows it."""
    seconds = 0.2 * 2**attempt
    if limiter.clock() + seconds > deadline:
        return False
    sleep(seconds)
    return True


def _heard(limiter: RateLimiter, location_id: str, response: httpx.Response, admission: Admission) -> Heard:
    """Share what GHL said about its limits; a Redis failure here must not turn a reply (perhaps a
    message GHL accepted) into an error that gets the call made again."""
    try:
        heard = limiter.heard(location_id, response.status_code, response.headers, admission)
    except Exception as exc:
        logger.warning("rate limit not shared", extra={"location_id": location_id, "error": type(exc).__name__})
        return Heard(retry_after(response.headers) if response.status_code == 429 else 0.0)
    if heard.quota_until:
        logger.warning("GHL daily allowance spent", extra={"location_id": location_id, "until": heard.quota_until})
    return heard


def _refused(response: httpx.Response) -> PermanentFailure:
    status, body = response.status_code, _json(response)
    kind = {401: Unauthorized, 404: NotFound}.get(status, PermanentFailure)
    return kind(f"ghl_{status}: {_error_text(response, body)}", status, body)


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _error_text(response: httpx.Response, body: dict[str, Any]) -> str:
    message = body.get("message") or body.get("error_description") or body.get("error") or response.reason_phrase
    return str(message if not isinstance(message, list) else "; ".join(map(str, message)))[:200]
