"""Marketplace installations: each location's GHL OAuth tokens, kept in DynamoDB (INSTALLATIONS_TABLE,
key `location_id`; an agency install is keyed `company:<companyId>`), encrypted with the table's KMS
key. Redis is a cache that may lose data, so tokens never live there. Tokens are never logged,
returned or traced: nothing here puts one in a log line or an exception message.

An access token lives about a day (`expires_in`); it is refreshed REFRESH_AHEAD seconds before it
expires, and once on a 401. A refresh token is single-use and replaced by each refresh, so a refresh
takes a lock first: a conditional write on the item's `version`. Concurrent functions never spend the
same refresh token twice; a loser waits for the winner's token and reads it. A refresh GHL refuses
(`invalid_grant`) marks the installation `needs_reinstall` (the InstallationsNeedingReinstall metric
raises an alarm), and nothing is sent with its dead token. An agency (Company) installation gets each
location's token from `POST /oauth/locationToken`, kept on the location's item until it expires.

Which token a call uses: the location's installation when there is one, else GHL_API_KEY (in
marketplace mode only for GHL_LOCATION_ID), else none: the location is not installed.
"""

from __future__ import annotations

import functools
import time
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Any

from leadflow.config import settings
from leadflow.errors import StoreUnavailable
from leadflow.ghl.endpoints import Timeout
from leadflow.observability import count, logger

REFRESH_AHEAD = 600.0  # seconds before expiry a token is refreshed
LOCK_SECONDS = 20.0  # a refresh lock older than this was abandoned (its holder died)
WAIT_FOR_REFRESH = 8.0  # how long a loser waits for the winner's token
TIMEOUT = Timeout(connect=2.0, read=5.0)
INSTALL_LIMIT_KEY = "oauth-install"  # the code exchange names no location yet: its own limit
ACTIVE, NEEDS_REINSTALL = "active", "needs_reinstall"


class InstallRefused(Exception):
    """GHL refused an authorization code: nothing was stored."""


class TokenUnavailable(Exception):
    """No token could be had now (GHL or DynamoDB failing): retry later; nothing was sent."""


@dataclass
class Installation:
    location_id: str  # the table's key: a location id, or "company:<companyId>"
    user_type: str  # "Location" | "Company"
    access_token: str = ""
    refresh_token: str = ""  # none for a location token derived from an agency install
    expires_at: float = 0.0
    company_id: str = ""
    status: str = ACTIVE
    version: int = 0
    lock_until: float = 0.0
    approved_locations: list[str] = field(default_factory=list)
    installed_at: float = 0.0

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> Installation:
        names = set(cls.__dataclass_fields__)
        values: dict[str, Any] = {k: (float(v) if isinstance(v, Decimal) else v) for k, v in item.items() if k in names}
        values["version"] = int(values.get("version", 0))
        return cls(**values)

    def to_item(self) -> dict[str, Any]:
        return {k: (Decimal(repr(v)) if isinstance(v, float) else v) for k, v in asdict(self).items()}

    def __repr__(self) -> str:  # never a token in a log line or a traceback
        return f"Installation({self.location_id!r}, {self.user_type}, {self.status}, v{self.version})"


def company_key(company_id: str) -> str:
    return f"company:{company_id}"


@functools.cache
def table() -> Any:
    import boto3
    from botocore.config import Config

    config = Config(connect_timeout=1, read_timeout=2, retries={"max_attempts": 2, "mode": "standard"})
    return boto3.resource("dynamodb", config=config).Table(str(settings().installations_table))


def _dynamo(operation: Any, *args: Any, **kwargs: Any) -> Any:
    """A DynamoDB call; its failure is StoreUnavailable (the caller spills or retries)."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return operation(*args, **kwargs)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
            raise
        raise StoreUnavailable(f"installations unavailable: {exc.response.get('Error', {}).get('Code')}") from None
    except BotoCoreError as exc:
        raise StoreUnavailable(f"installations unavailable: {type(exc).__name__}") from None


def get(key: str) -> Installation | None:
    item = _dynamo(table().get_item, Key={"location_id": key}, ConsistentRead=True).get("Item")
    return Installation.from_item(item) if item else None


def save(installation: Installation) -> None:
    _dynamo(table().put_item, Item=installation.to_item())


def remove(location_id: str | None, company_id: str | None) -> None:
    """UNINSTALL: the location's tokens (or the agency's and the locations it served) go at once."""
    keys = [location_id] if location_id else []
    if company_id and not location_id:
        company = get(company_key(company_id))
        keys += [company_key(company_id)] + (company.approved_locations if company else [])
    for key in keys:
        _dynamo(table().delete_item, Key={"location_id": key})
    logger.info("installation removed", extra={"location_id": location_id, "company_id": company_id})


# ---------------------------------------------------------------------------------------------
# GHL's token endpoint


def _post_token(form: dict[str, str], limited_as: str) -> dict[str, Any]:
    """POST /oauth/token (form-encoded) through the GHL client, under `limited_as`'s rate limit.
    Raises InstallRefused when GHL refuses the grant, TokenUnavailable when it did not answer."""
    from leadflow import ghl  # the client reads tokens from here: imported when first needed

    config = settings()
    secret = config.client_secret()
    if not config.ghl_client_id or not secret:
        raise InstallRefused("the app's OAuth client (GHL_CLIENT_ID, GHL_CLIENT_SECRET) is not configured")
    body = {"client_id": config.ghl_client_id, "client_secret": secret} | form
    try:
        data = ghl.call(limited_as, ghl.OAUTH_TOKEN, form=body, timeout=TIMEOUT)
    except ghl.PermanentFailure as exc:
        raise InstallRefused(_oauth_error(exc.body, exc.status)) from None
    except ghl.GhlError as exc:  # not answered, or unknown: the grant may be tried again later
        raise TokenUnavailable(f"GHL token endpoint: {exc.reason}") from None
    if not data.get("access_token"):
        raise TokenUnavailable("GHL token endpoint answered without a token")
    return data


def _oauth_error(body: dict[str, Any], status: int | None) -> str:
    reason = body.get("error") or body.get("message") or f"GHL answered {status}"
    return str(reason if not isinstance(reason, list) else "; ".join(map(str, reason)))[:120]


def _from_grant(data: dict[str, Any], now: float) -> Installation:
    user_type = str(data.get("userType") or "Location")
    company_id = str(data.get("companyId") or "")
    key = str(data.get("locationId") or "") if user_type == "Location" else company_key(company_id)
    if not key or key == company_key(""):
        raise InstallRefused("GHL's token names no location or company")
    return Installation(
        location_id=key,
        user_type=user_type,
        access_token=str(data["access_token"]),
        refresh_token=str(data.get("refresh_token") or ""),
        expires_at=now + float(data.get("expires_in") or 86_399),
        company_id=company_id,
        approved_locations=[str(x) for x in data.get("approvedLocations") or []],
        installed_at=now,
    )


def exchange_code(code: str, now: float | None = None) -> Installation:
    """The OAuth callback: trade the authorization code for tokens and store the installation."""
    now = time.time() if now is None else now
    form = {"grant_type": "authorization_code", "code": code, "user_type": "Location"}
    if settings().ghl_redirect_uri:
        form["redirect_uri"] = str(settings().ghl_redirect_uri)
    installation = _from_grant(_post_token(form, INSTALL_LIMIT_KEY), now)
    save(installation)
    for location_id in installation.approved_locations:  # an agency's locations find their company
        if get(location_id) is None:
            save(Installation(location_id, "Location", company_id=installation.company_id, installed_at=now))
    count("AppInstalled", user_type=installation.user_type)
    logger.info("installed", extra={"location_id": installation.location_id, "user_type": installation.user_type})
    return installation


# ---------------------------------------------------------------------------------------------
# The token a call uses


def token_for(location_id: str, *, refresh: bool = False, now: float | None = None) -> str | None:
    """The token for calls on `location_id`, or None when it is not installed. `refresh` forces a
    new one (after a 401). Raises TokenUnavailable when one exists but cannot be had now."""
    config = settings()
    if config.marketplace:
        installation = get(location_id)
        if installation is not None:
            return _fresh(installation, refresh, time.time() if now is None else now)
        if location_id != config.location(None):
            return None
    return config.ghl_token()


def delivery_mode(location_id: str) -> str:
    """How a message for the location goes out: "live" (a token to send with), "dry-run" (SEND_MODE,
    or the default location without a token), or "not_installed" (marketplace mode, and the app is
    not installed there, or must be installed again)."""
    config = settings()
    if config.send_mode == "dry-run":
        return "dry-run"
    default = location_id == config.location(None)
    if config.marketplace:
        installation = get(location_id)
        if installation is not None:
            return "live" if installation.status == ACTIVE else "not_installed"
        if not default:
            return "not_installed"
    return "live" if config.ghl_token() else "dry-run"


def _fresh(installation: Installation, refresh: bool, now: float) -> str | None:
    if installation.status != ACTIVE:
        return None
    if installation.access_token and not refresh and installation.expires_at - now > REFRESH_AHEAD:
        return installation.access_token
    if installation.refresh_token:
        return _refresh(installation, now)
    if installation.company_id:
        return _from_company(installation, now)
    return None


def _refresh(installation: Installation, now: float) -> str | None:
    """Refresh under the lock; the loser reads the winner's token."""
    from botocore.exceptions import ClientError

    seen = installation.version
    try:
        _dynamo(
            table().update_item,
            Key={"location_id": installation.location_id},
            UpdateExpression="SET version = :next, lock_until = :until",
            ConditionExpression="version = :seen AND (attribute_not_exists(lock_until) OR lock_until < :now)",
            ExpressionAttributeValues={
                ":seen": seen,
                ":next": seen + 1,
                ":until": Decimal(repr(now + LOCK_SECONDS)),
                ":now": Decimal(repr(now)),
            },
        )
    except ClientError:  # another function holds the lock, or has refreshed already
        return _await_refresh(installation.location_id, seen, now)
    locked = seen + 1
    try:
        form = {"grant_type": "refresh_token", "refresh_token": installation.refresh_token}
        data = _post_token(form | {"user_type": installation.user_type}, installation.location_id)
    except InstallRefused:
        _mark_needs_reinstall(installation.location_id, locked)
        return None
    except TokenUnavailable:
        _unlock(installation.location_id, locked)
        raise
    fresh = _from_grant(data | {"locationId": data.get("locationId") or installation.location_id}, now)
    _dynamo(
        table().update_item,
        Key={"location_id": installation.location_id},
        UpdateExpression="SET access_token = :a, refresh_token = :r, expires_at = :e, version = :next, lock_until = :z",
        ConditionExpression="version = :locked",
        ExpressionAttributeValues={
            ":a": fresh.access_token,
            ":r": fresh.refresh_token or installation.refresh_token,
            ":e": Decimal(repr(fresh.expires_at)),
            ":next": locked + 1,
            ":locked": locked,
            ":z": Decimal(0),
        },
    )
    count("TokensRefreshed")
    return fresh.access_token


def _await_refresh(key: str, seen: int, now: float) -> str | None:
    deadline = time.monotonic() + WAIT_FOR_REFRESH
    while time.monotonic() < deadline:
        current = get(key)
        if current is None or current.status != ACTIVE:
            return None
        if current.version > seen and current.lock_until <= time.time():
            return current.access_token
        if current.lock_until and current.lock_until < time.time():  # the holder died: try again
            return _refresh(current, time.time())
        time.sleep(0.1)
    raise TokenUnavailable("a token refresh is still under way")


def _unlock(key: str, locked: int) -> None:
    table().update_item(
        Key={"location_id": key},
        UpdateExpression="SET lock_until = :z",
        ConditionExpression="version = :locked",
        ExpressionAttributeValues={":z": Decimal(0), ":locked": locked},
    )


def _mark_needs_reinstall(key: str, locked: int) -> None:
    table().update_item(
        Key={"location_id": key},
        UpdateExpression="SET #s = :s, access_token = :none, version = :next, lock_until = :z",
        ConditionExpression="version = :locked",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={
            ":s": NEEDS_REINSTALL,
            ":none": "",
            ":next": locked + 1,
            ":locked": locked,
            ":z": Decimal(0),
        },
    )
    count("InstallationsNeedingReinstall")
    logger.error("GHL refused the refresh token: the app must be installed again", extra={"location_id": key})


def _from_company(installation: Installation, now: float) -> str | None:
    """A location of an agency install: its token from POST /oauth/locationToken, kept until it expires."""
    company = get(company_key(installation.company_id))
    company_token = _fresh(company, False, now) if company else None
    if not company_token:
        return None
    from leadflow import ghl  # the client reads tokens from here: imported when first needed

    form = {"companyId": installation.company_id, "locationId": installation.location_id}
    try:  # under the agency's rate limit, with its token (`company:<id>` is its installation's key)
        data = ghl.call(company_key(installation.company_id), ghl.LOCATION_TOKEN, form=form, timeout=TIMEOUT)
    except ghl.GhlError as exc:
        raise TokenUnavailable(f"GHL location token: {exc.reason}") from None
    token, expires = str(data.get("access_token") or ""), now + float(data.get("expires_in") or 86_399)
    if not token:
        raise TokenUnavailable("GHL location token answered without a token")
    _dynamo(
        table().update_item,
        Key={"location_id": installation.location_id},
        UpdateExpression="SET access_token = :a, expires_at = :e",
        ExpressionAttributeValues={":a": token, ":e": Decimal(repr(expires))},
    )
    return token
