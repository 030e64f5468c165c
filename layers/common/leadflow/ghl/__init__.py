"""The GHL API client and GHL's rate limits, shared by every function per location.

call(location_id, endpoint, *ids, json=..., before_post=...)   client.py: every GHL request
send_message(...)                                               client.py: POST /conversations/messages
SEND_MESSAGE, GET_CONTACT, UPDATE_CONTACT, ...                  endpoints.py: method, path, Version, idempotent
token_for(location_id)                                          tokens.py: which token a location's calls use
RateLimiter                                                     limiter.py: the sliding window per location (Redis)
TransientFailure, OutcomeUnknown, PermanentFailure, ...         errors.py: what the caller may do next
"""

from leadflow.ghl.client import MAX_ATTEMPTS, MAX_WAIT, TIMEOUT, call, daily_quota_spent, http, send_message
from leadflow.ghl.endpoints import (
    ADD_TAGS,
    CREATE_CUSTOM_FIELD,
    CREATE_TASK,
    ENDPOINTS,
    GET_CONTACT,
    GET_LOCATION,
    LIST_CUSTOM_FIELDS,
    LOCATION_TOKEN,
    OAUTH_TOKEN,
    REMOVE_TAGS,
    SEND_MESSAGE,
    UPDATE_CONTACT,
    Endpoint,
    Timeout,
)
from leadflow.ghl.errors import (
    NOT_INSTALLED,
    RATE_LIMITED,
    DailyQuotaSpent,
    GhlError,
    NotFound,
    NotInstalled,
    OutcomeUnknown,
    PermanentFailure,
    RateLimited,
    TransientFailure,
    Unauthorized,
)
from leadflow.ghl.limiter import WINDOW_MAX, WINDOW_SECONDS, RateLimiter
from leadflow.ghl.tokens import token_for

__all__ = [
    "ADD_TAGS",
    "CREATE_CUSTOM_FIELD",
    "CREATE_TASK",
    "ENDPOINTS",
    "GET_CONTACT",
    "GET_LOCATION",
    "LIST_CUSTOM_FIELDS",
    "LOCATION_TOKEN",
    "MAX_ATTEMPTS",
    "MAX_WAIT",
    "NOT_INSTALLED",
    "OAUTH_TOKEN",
    "RATE_LIMITED",
    "REMOVE_TAGS",
    "SEND_MESSAGE",
    "TIMEOUT",
    "UPDATE_CONTACT",
    "WINDOW_MAX",
    "WINDOW_SECONDS",
    "DailyQuotaSpent",
    "Endpoint",
    "GhlError",
    "NotFound",
    "NotInstalled",
    "OutcomeUnknown",
    "PermanentFailure",
    "RateLimited",
    "RateLimiter",
    "Timeout",
    "TransientFailure",
    "Unauthorized",
    "call",
    "daily_quota_spent",
    "http",
    "send_message",
    "token_for",
]
