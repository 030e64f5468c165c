"""The GHL API client for sending: `POST /conversations/messages` with httpx, behind a rate limiter
that every concurrent sender shares (a Redis token bucket per location: GHL allows 100 requests per
10 seconds per location), honouring 429 Retry-After and the X-RateLimit-* headers.

Outcomes: sent (the message's ids), PermanentFailure (a 4xx other than 429: recorded as failed with
the reason), TransientFailure (the request certainly never reached GHL or was refused unprocessed:
a connect error, a 429, a 5xx; handed back to SQS to retry), OutcomeUnknown (the request may have
reached GHL: a read timeout, a connection reset after the request was written). GHL's send API has
no idempotency key, so a request whose outcome is unknown is never repeated, here or by SQS.
"""

from __future__ import annotations

import functools
import html
import time
from collections.abc import Callable
from typing import Any

import httpx

from leadflow.config import settings
from leadflow.lead_state import location_key
from leadflow.observability import logger
from leadflow.redis_client import Cache, cache

API_VERSION = "2021-04-15"
BUCKET_CAPACITY = 100
BUCKET_WINDOW = 10.0  # seconds
MAX_ATTEMPTS = 3
MAX_WAIT = 10.0  # seconds one send may wait in all (the bucket, Retry-After, backoff) before giving the job back
TIMEOUT = httpx.Timeout(10.0, connect=3.0)

# KEYS: bucket. ARGV: capacity, refill per second, now. Returns 0 when a token was taken, else the
# seconds until one is available (a token within float error of whole counts as whole).
_TAKE = """
local cap, rate, now = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local b = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens, at = tonumber(b[1]) or cap, tonumber(b[2]) or now
tokens = math.min(cap, tokens + math.max(0, now - at) * rate)
local wait = 0
if tokens > 0.999999 then tokens = math.max(0, tokens - 1) else wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('EXPIRE', KEYS[1], 60)
return tostring(wait)
"""


class DeliveryError(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PermanentFailure(DeliveryError):
    """GHL refused the message (4xx): retrying will not help."""


class TransientFailure(DeliveryError):
    """GHL certainly did not send (connect error, 5xx, rate limit): SQS retries the job."""


class OutcomeUnknown(DeliveryError):
    """GHL may have sent the message: never repeat the request."""


# Errors raised before a byte of the request left: the only network errors that may be retried.
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


class RateLimiter:
    def __init__(self, store: Cache | None = None, clock: Callable[[], float] = time.time) -> None:
        self.cache = store or cache()
        self._take = self.cache.register_script(_TAKE)
        self._clock = clock

    def clock(self) -> float:
        return self._clock()

    def acquire(
        self, location_id: str, sleep: Callable[[float], None] = time.sleep, deadline: float | None = None
    ) -> None:
        """Take a token, waiting for one until `deadline` (default MAX_WAIT from now)."""
        key = location_key(location_id, "ghl-bucket")
        deadline = self._clock() + MAX_WAIT if deadline is None else deadline
        while True:
            args = [BUCKET_CAPACITY, BUCKET_CAPACITY / BUCKET_WINDOW, repr(self._clock())]
            wait = float(self.cache.run(lambda r, a=args: self._take(keys=[key], args=a, client=r)))  # type: ignore[misc]
            if wait <= 0:
                return
            if self._clock() + wait > deadline:
                raise TransientFailure("rate_limited")
            sleep(wait)

    def drain(self, location_id: str, seconds: float) -> None:
        """GHL says the allowance is spent: empty the shared bucket for `seconds`."""
        key = location_key(location_id, "ghl-bucket")
        refill = BUCKET_CAPACITY / BUCKET_WINDOW
        tokens = repr(-seconds * refill)
        self.cache.run(lambda r: r.hset(key, mapping={"tokens": tokens, "at": repr(self._clock())}))


@functools.cache
def http() -> httpx.Client:
    return httpx.Client(timeout=TIMEOUT)


def _payload(contact_id: str, channel: str, body: str, subject: str | None) -> dict[str, Any]:
    if channel == "email":
        paragraphs = "".join(f"<p>{html.escape(p)}</p>" for p in body.split("\n\n") if p.strip())
        return {"type": "Email", "contactId": contact_id, "subject": subject or "", "html": paragraphs}
    return {"type": "SMS", "contactId": contact_id, "message": body}


def _retry_after(response: httpx.Response) -> float:
    try:
        return max(0.0, float(response.headers.get("Retry-After", "1")))
    except ValueError:
        return 1.0


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
    """Send through GHL; returns the ids GHL gave the message (`messageId`, and an email's
    `emailMessageId`, which its OutboundMessage webhook names). `before_post` runs right before each
    request, after any rate-limit wait: the last chance to stop (it raises) and to record the attempt."""
    config = settings()
    token = config.ghl_token()
    if not token:
        raise PermanentFailure("no GHL API key configured")
    limiter = limiter or RateLimiter()
    url = config.ghl_api_base_url.rstrip("/") + "/conversations/messages"
    headers = {"Authorization": f"Bearer {token}", "Version": API_VERSION, "Accept": "application/json"}
    payload = _payload(contact_id, channel, body, subject)
    deadline = limiter.clock() + MAX_WAIT  # every wait of one send shares it, so the job's time is bounded
    for attempt in range(1, MAX_ATTEMPTS + 1):
        limiter.acquire(location_id, sleep, deadline)
        before_post()
        try:
            response = http().post(url, json=payload, headers=headers)
        except NOT_SENT as exc:
            backoff = 0.2 * 2**attempt
            if attempt == MAX_ATTEMPTS or limiter.clock() + backoff > deadline:
                raise TransientFailure(f"network: {type(exc).__name__}") from exc
            sleep(backoff)
            continue
        except httpx.HTTPError as exc:  # read timeout, reset, protocol error: GHL may have the message
            raise OutcomeUnknown(f"outcome_unknown: {type(exc).__name__}") from exc
        if response.headers.get("X-RateLimit-Remaining") == "0":
            interval = float(response.headers.get("X-RateLimit-Interval-Milliseconds", "10000")) / 1000
            _drain(limiter, location_id, interval)
        if response.status_code == 429:
            wait = _retry_after(response)
            _drain(limiter, location_id, wait)
            if attempt == MAX_ATTEMPTS or limiter.clock() + wait > deadline:
                raise TransientFailure("rate_limited")
            sleep(wait)
            continue
        if response.status_code >= 500:
            raise TransientFailure(f"ghl_{response.status_code}")
        if response.status_code >= 400:
            raise PermanentFailure(f"ghl_{response.status_code}: {_error_text(response)}")
        data = _json(response)
        many = data.get("messageIds")  # GMB sends answer with a list
        ids = [data.get("messageId"), data.get("emailMessageId"), *(many if isinstance(many, list) else [])]
        return tuple(i for i in ids if isinstance(i, str) and i)
    raise TransientFailure("rate_limited")


def _drain(limiter: RateLimiter, location_id: str, seconds: float) -> None:
    """Share GHL's word that the allowance is spent; a Redis failure here must not turn a reply
    (perhaps a message GHL accepted) into an error that gets the job sent again."""
    try:
        limiter.drain(location_id, seconds)
    except Exception as exc:
        logger.warning("rate limit not shared", extra={"location_id": location_id, "error": type(exc).__name__})


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _error_text(response: httpx.Response) -> str:
    message = _json(response).get("message") or response.reason_phrase
    return str(message if not isinstance(message, list) else "; ".join(map(str, message)))[:200]
