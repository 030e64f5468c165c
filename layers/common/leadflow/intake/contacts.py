"""A lead's timezone from GHL when a token is set: the contact's own (`GET /contacts/{id}`), else its
location's (`GET /locations/{id}`, remembered per process), through the GHL client: under the
location's rate limit, but never waiting long for it (the webhook answers within its timeout).

Webhook payloads carry no timezone. When to ask (`lookup_due`): never for a lead that has one;
after a contact event without one, always (GHL just sent the contact's fields); after any other
event (website activity above all: a lead may be known only from it), at most once a day per lead,
the attempt's time kept in the lead's hash as `g:tz_checked`. A failure of any kind falls back
quietly: the lead's area code, else DEFAULT_TIMEZONE, decides (leadflow.where) until a later ask.
"""

from __future__ import annotations

from leadflow import ghl
from leadflow.config import Settings
from leadflow.ghl.endpoints import Timeout
from leadflow.intake.events import Action, valid_zone
from leadflow.lead import LeadState
from leadflow.lead_state import LeadStore, encode_profile, lead_key
from leadflow.observability import logger

TIMEOUT = Timeout(connect=1.0, read=1.5)
MAX_WAIT = 0.5  # seconds a lookup may wait for the rate limit; past that the fallbacks decide
LOOKUP_EVERY_SECONDS = 86_400  # for a lead without a timezone, outside contact events
CHECKED = "g:tz_checked"

# KEYS: the lead's hash. ARGV: now, LOOKUP_EVERY_SECONDS. Takes the day's lookup for this lead
# (sets g:tz_checked to now, returns 1) unless another event took it less than a day ago (0).
_CLAIM = """
local last = tonumber(redis.call('HGET', KEYS[1], 'g:tz_checked') or '')
if last and tonumber(ARGV[1]) - last < tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], 'g:tz_checked', ARGV[1])
return 1
"""


_location_zones: dict[tuple[str, str], str] = {}


def lookup_due(state: LeadState, contact_event: bool, now: float) -> bool:
    """Whether to ask GHL for this lead's timezone now (`state` as the event left it): never when it
    has one; on a contact event without one, always; otherwise when the last attempt is a day old."""
    if state.profile.timezone:
        return False
    return contact_event or now - state.tz_checked >= LOOKUP_EVERY_SECONDS


def fill_timezone(leads: LeadStore, action: Action, state: LeadState, config: Settings, now: float) -> None:
    """Ask GHL for the lead's timezone when due, and keep it in the lead (and in `state`). Outside a
    contact event the day's attempt is claimed first, atomically: concurrent events of one lead make
    one. Needs a GHL token; never fails the event."""
    contact_event = action.lookup_timezone
    if not lookup_due(state, contact_event, now) or not _has_token(action.location_id):
        return
    key = lead_key(action.location_id, action.contact_id)
    try:
        if not contact_event and not leads.cache.run(lambda r: r.eval(_CLAIM, 1, key, repr(now), LOOKUP_EVERY_SECONDS)):
            return
        zone = lead_timezone(action.contact_id, action.location_id, config)
        fields = encode_profile({"timezone": zone}) if zone else {}
        if contact_event:
            fields[CHECKED] = repr(now)
        if fields:
            leads.set_fields(action.location_id, action.contact_id, fields)
    except Exception as exc:  # a timezone is never worth an event
        logger.warning("timezone not kept", extra={"error": type(exc).__name__})
        return
    state.tz_checked = now
    if zone:
        state.profile.timezone = zone


def _has_token(location_id: str) -> bool:
    try:
        return bool(ghl.token_for(location_id))
    except Exception:  # the secret unreadable now: no lookup, and no day's attempt spent on it
        return False


def lead_timezone(contact_id: str, location_id: str, config: Settings) -> str | None:
    """The contact's timezone, else its location's, else None (DEFAULT_TIMEZONE applies)."""
    return _lookup(location_id, ghl.GET_CONTACT, contact_id, "contact") or location_timezone(location_id, config)


def location_timezone(location_id: str, config: Settings) -> str | None:
    key = (config.ghl_api_base_url, location_id)
    if key not in _location_zones:
        zone = _lookup(location_id, ghl.GET_LOCATION, location_id, "location")
        if zone is None:
            return None
        _location_zones[key] = zone
    return _location_zones[key]


def _lookup(location_id: str, endpoint: ghl.Endpoint, item_id: str, field: str) -> str | None:
    """`timezone` of the `<field>` object GHL returns, or None on any failure (one attempt)."""
    try:
        data = ghl.call(location_id, endpoint, item_id, timeout=TIMEOUT, max_wait=MAX_WAIT, attempts=1)
        item = data.get(field)
        return valid_zone(item.get("timezone")) if isinstance(item, dict) else None
    except ghl.GhlError as exc:
        logger.info("timezone unavailable", extra={"source": field, "error": type(exc).__name__, "status": exc.status})
        return None
    except Exception as exc:  # never fail an event over a timezone
        logger.info("timezone lookup failed", extra={"source": field, "error": type(exc).__name__})
        return None
