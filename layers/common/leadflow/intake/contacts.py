"""A lead's timezone from GHL when a token is set: the contact's own (`GET /contacts/{id}`), else its
location's (`GET /locations/{id}`, remembered per process), both Version 2021-07-28.

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


_location_zones: dict[tuple[str, str], str] = {}


def lead_timezone(contact_id: str, location_id: str, config: Settings) -> str | None:
    """The contact's timezone, else its location's, else None (DEFAULT_TIMEZONE applies)."""
    return _lookup("contacts", contact_id, "contact", config) or location_timezone(location_id, config)


def location_timezone(location_id: str, config: Settings) -> str | None:
    key = (config.ghl_api_base_url, location_id)
    if key not in _location_zones:
        zone = _lookup("locations", location_id, "location", config)
        if zone is None:
            return None
        _location_zones[key] = zone
    return _location_zones[key]


def _lookup(collection: str, item_id: str, field: str, config: Settings) -> str | None:
    """`timezone` of GET /<collection>/<id>'s `<field>` object, or None on any failure."""
    try:
        token = config.ghl_token()
        if not token:
            return None
        response = http().get(
            f"{config.ghl_api_base_url.rstrip('/')}/{collection}/{quote(item_id, safe='')}",
            headers={"Authorization": f"Bearer {token}", "Version": API_VERSION, "Accept": "application/json"},
        )
        if response.status_code != 200:
            logger.info("timezone unavailable", extra={"source": collection, "status": response.status_code})
            return None
        data = response.json()
        item = data.get(field) if isinstance(data, dict) else None
        return valid_zone(item.get("timezone")) if isinstance(item, dict) else None
    except Exception as exc:  # never fail an event over a timezone
        logger.info("timezone lookup failed", extra={"source": collection, "error": type(exc).__name__})
        return None
