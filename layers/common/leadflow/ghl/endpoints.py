"""Every GHL endpoint leadflow calls, in one table: its method and path as GHL's reference writes
them, the `Version` header it requires, and whether making it twice does no more than once.

Versions are those of GoHighLevel/highlevel-api-docs (apps/contacts.json, apps/locations.json and
apps/oauth.json: 2021-07-28; apps/conversations.json: 2021-04-15). `POST /oauth/token` takes no
Version and no bearer token: it is form-encoded with the app's client id and secret.

`idempotent` decides what an unknown outcome (a read timeout, a reset after the request was written)
allows: an idempotent call is made again; any other is never repeated, since GHL may have acted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote

_PLACEHOLDER = re.compile(r"\{[^}]+\}")


@dataclass(frozen=True, slots=True)
class Endpoint:
    method: str
    path: str  # GHL's template, e.g. /contacts/{contactId}/tags
    version: str | None  # the Version header; None sends none
    idempotent: bool  # making it twice does no more than making it once
    auth: bool = True  # Authorization: Bearer <the location's token>

    def url_path(self, *ids: str) -> str:
        """The path with each {placeholder} replaced, in order, by an id (percent-encoded: ids are data)."""
        wanted = len(_PLACEHOLDER.findall(self.path))
        if len(ids) != wanted:
            raise ValueError(f"{self.method} {self.path} takes {wanted} ids, got {len(ids)}")
        parts = iter(ids)
        return _PLACEHOLDER.sub(lambda _: quote(next(parts), safe=""), self.path)


# Adding a tag twice leaves it there once; creating a task or a field twice makes two; a refresh
# token is single-use, so a token exchange is never repeated on an unknown outcome.
# fmt: off
#                              method    path                                     Version       idempotent
SEND_MESSAGE        = Endpoint("POST",   "/conversations/messages",               "2021-04-15", False)
GET_CONTACT         = Endpoint("GET",    "/contacts/{contactId}",                 "2021-07-28", True)
UPDATE_CONTACT      = Endpoint("PUT",    "/contacts/{contactId}",                 "2021-07-28", True)
ADD_TAGS            = Endpoint("POST",   "/contacts/{contactId}/tags",            "2021-07-28", True)
REMOVE_TAGS         = Endpoint("DELETE", "/contacts/{contactId}/tags",            "2021-07-28", True)
CREATE_TASK         = Endpoint("POST",   "/contacts/{contactId}/tasks",           "2021-07-28", False)
GET_LOCATION        = Endpoint("GET",    "/locations/{locationId}",               "2021-07-28", True)
LIST_CUSTOM_FIELDS  = Endpoint("GET",    "/locations/{locationId}/customFields",  "2021-07-28", True)
CREATE_CUSTOM_FIELD = Endpoint("POST",   "/locations/{locationId}/customFields",  "2021-07-28", False)
OAUTH_TOKEN         = Endpoint("POST",   "/oauth/token",                          None,         False, auth=False)
LOCATION_TOKEN      = Endpoint("POST",   "/oauth/locationToken",                  "2021-07-28", False)
# fmt: on

ENDPOINTS = (
    SEND_MESSAGE, GET_CONTACT, UPDATE_CONTACT, ADD_TAGS, REMOVE_TAGS, CREATE_TASK,
    GET_LOCATION, LIST_CUSTOM_FIELDS, CREATE_CUSTOM_FIELD, OAUTH_TOKEN, LOCATION_TOKEN,
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Timeout:
    """A GHL call's time limits in seconds: to connect, and for each read, write and pool wait. The
    client makes httpx's Timeout of it at the call: httpx is imported by the first call, not at init."""

    connect: float
    read: float

    @property
    def write(self) -> float:
        return self.read
