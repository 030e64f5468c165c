"""Which token a GHL call for a location uses: the one seam between the client and where tokens
live (leadflow.installations: the location's marketplace installation, else GHL_API_KEY).
Tokens never appear in logs, replies, traces or metrics.
"""

from __future__ import annotations

from leadflow import installations
from leadflow.errors import StoreUnavailable
from leadflow.ghl.errors import TransientFailure


def token_for(location_id: str, refresh: bool = False) -> str | None:
    """The bearer token for `location_id`'s calls, or None: the location is not installed.
    `refresh` asks for a new one (GHL answered 401). A token that exists but cannot be had now
    (GHL's token endpoint or DynamoDB failing) is a TransientFailure: nothing was sent."""
    try:
        return installations.token_for(location_id, refresh=refresh)
    except (installations.TokenUnavailable, StoreUnavailable) as exc:
        raise TransientFailure(f"token: {exc}") from None
