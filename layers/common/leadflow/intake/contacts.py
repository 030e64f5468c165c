"""The contact's timezone from GHL (`GET /contacts/{id}`, Version 2021-07-28), when a token is set.

Webhook payloads carry no timezone. A failure of any kind falls back quietly: scoring then uses
DEFAULT_TIMEZONE, and the next contact event asks again.
"""

from __future__ import annotations

import functools
from urllib.parse import quote

import httpx

from leadflow.config import Settings
from leadflow.intake.events import valid_zone
from leadflow.observability import logger

API_VERSION = "2021-07-28"
TIMEOUT = httpx.Timeout(1.5, connect=1.0)


@functools.cache
def http() -> httpx.Client:
    return httpx.Client(timeout=TIMEOUT)


def contact_timezone(contact_id: str, config: Settings) -> str | None:
    try:
        token = config.ghl_token()
        if not token:
            return None
        response = http().get(
            f"{config.ghl_api_base_url.rstrip('/')}/contacts/{quote(contact_id, safe='')}",
            headers={"Authorization": f"Bearer {token}", "Version": API_VERSION, "Accept": "application/json"},
        )
        if response.status_code != 200:
            logger.info("contact timezone unavailable", extra={"status": response.status_code})
            return None
        data = response.json()
        contact = data.get("contact") if isinstance(data, dict) else None
        return valid_zone(contact.get("timezone")) if isinstance(contact, dict) else None
    except Exception as exc:  # never fail an event over a timezone
        logger.info("contact timezone lookup failed", extra={"error": type(exc).__name__})
        return None
