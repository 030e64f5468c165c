"""The messages leadflow sent itself, known by the ids GHL returned for them, so that their
`OutboundMessage` webhook is not taken for an agent taking the conversation over.

    lf:{loc:cid}:own   zset   message id -> when it was sent (the lead's hash tag: its slot)

Kept DEDUPE_TTL (7 days): the webhook naming a message comes within seconds, GHL retries it for up to
2 hours and a spilled event may replay hours later, and after 7 days a redelivery is a duplicate
anyway (its de-duplication marker lives as long). Trimmed to that window on every write, so a lead
holds at most the ids of a week's sends (the daily cap bounds them).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from leadflow.lead_state import DEDUPE_TTL, lead_prefix
from leadflow.observability import logger
from leadflow.redis_client import Cache


def own_key(location_id: str, contact_id: str) -> str:
    return lead_prefix(location_id, contact_id) + ":own"


def remember(cache: Cache, location_id: str, contact_id: str, message_ids: Iterable[str], at: float) -> None:
    """Record the ids of a message GHL accepted. Never raises: the message is sent whatever happens
    here, and a failure must neither fail the job nor get it sent again (at worst, that message's
    webhook pauses the lead as an agent's would: the safe side)."""
    ids = [i for i in message_ids if i]
    if not ids:
        return
    key = own_key(location_id, contact_id)

    def write(r: Any) -> None:
        pipe = r.pipeline(transaction=False)
        pipe.zadd(key, dict.fromkeys(ids, at))
        pipe.zremrangebyscore(key, "-inf", at - DEDUPE_TTL)
        pipe.expire(key, DEDUPE_TTL)
        pipe.execute()

    try:
        cache.run(write)
    except Exception as exc:
        logger.warning(
            "own message id not recorded; its webhook will pause the lead",
            extra={"location_id": location_id, "contact_id": contact_id, "error": type(exc).__name__},
        )


def any_own(cache: Cache, location_id: str, contact_id: str, message_ids: Iterable[str]) -> bool:
    """Whether any of these ids is a message leadflow sent. Raises StoreUnavailable when Redis is down."""
    ids = list(message_ids)
    if not ids:
        return False
    key = own_key(location_id, contact_id)
    scores = cache.run(lambda r: r.zmscore(key, ids))
    return any(score is not None for score in scores)
