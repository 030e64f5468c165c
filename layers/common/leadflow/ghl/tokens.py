"""Which token a GHL call for a location uses: the one seam between the client and where tokens
live. Today the private integration token (`GHL_API_KEY`, or its secret) serves every location;
marketplace installations (per-location OAuth tokens) replace this body, nothing else.
Tokens never appear in logs, replies, traces or metrics.
"""

from __future__ import annotations

from leadflow.config import settings


def token_for(location_id: str) -> str | None:
    """The bearer token for `location_id`'s calls, or None: the location is not installed."""
    return settings().ghl_token()
