"""The marketplace app: install through GHL's redirect, tokens per location refreshed under a lock,
a refused refresh, uninstall, agency installs, GHL_API_KEY beside it, and no token in any log line.
Against a GHL stand-in (local/ghl_standin.py) that issues tokens and refuses a refresh token used twice,
DynamoDB in moto, the tests' own redis-server."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from leadflow.config import settings
from local.ghl_standin import GhlStandIn as FakeGhl
from tests.conftest import Queues
from tests.helpers import HOT, seed_lead, zone_at
from tests.integration.test_send_function import deliver, job, messages_api, outbox
from tests.integration.test_webhook_support import function_url_event, ghl_event, reply

LOC = "loc-2"  # an installed sub-account; "loc-1" is GHL_LOCATION_ID
NOON = {"timezone": zone_at(12), "first_name": "Ana"}


@pytest.fixture
def ghl_app(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGhl]:
    fake = FakeGhl(LOC)
    monkeypatch.setenv("GHL_API_BASE_URL", fake.url)
    monkeypatch.setenv("GHL_CLIENT_ID", "app-client")
    monkeypatch.setenv("GHL_CLIENT_SECRET", "app-secret")
    monkeypatch.setenv("GHL_REDIRECT_URI", "https://leadflow.example/oauth/callback")
    monkeypatch.setenv("INSTALLATIONS_TABLE", "leadflow-installations")
    monkeypatch.setattr(time, "sleep", _short_sleep)
    yield fake
    fake.close()


_real_sleep = time.sleep


def _short_sleep(seconds: float) -> None:
    _real_sleep(min(seconds, 0.05))


def create_table() -> None:
    import boto3

    from leadflow import installations

    boto3.client("dynamodb", region_name="us-east-1").create_table(
        TableName="leadflow-installations",
        KeySchema=[{"AttributeName": "location_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "location_id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    installations.table.cache_clear()
    settings.cache_clear()


@pytest.fixture
def marketplace(send: Any, queues: Queues, ghl_app: FakeGhl) -> FakeGhl:
    """The send function in marketplace mode (DynamoDB in the same moto as the queues)."""
    create_table()
    return ghl_app


def install(app: Any, context: Any, fake: FakeGhl, code: str = "code-1", **grant: Any) -> tuple[int, str]:
    fake.add_code(code, **grant)
    event = function_url_event("/oauth/callback", b"", method="GET", query={"code": code})
    response = app.lambda_handler(event, context)
    return response["statusCode"], response["body"]


@pytest.fixture
def webhook(marketplace: FakeGhl, monkeypatch: pytest.MonkeyPatch) -> Any:
    from tests.helpers import load_app
    from tests.integration.test_webhook_support import clear_intake_caches, ed25519_private, public_pem

    monkeypatch.setenv("GHL_WEBHOOK_PUBLIC_KEY", public_pem(ed25519_private()))
    settings.cache_clear()
    clear_intake_caches()
    return load_app("webhook")


def atomic(table: Any) -> None:
    """DynamoDB applies each conditional write atomically; moto's in-process table, shared by threads,
    does not promise it. One lock around its writes gives the tests DynamoDB's guarantee."""
    lock = threading.Lock()
    for name in ("update_item", "put_item", "get_item"):
        original = getattr(table, name)

        def locked(*args: Any, _original: Any = original, **kwargs: Any) -> Any:
            with lock:
                return _original(*args, **kwargs)

        setattr(table, name, locked)


def stored(key: str = LOC) -> Any:
    from leadflow import installations

    return installations.get(key)


# --- install ---------------------------------------------------------------------------------------


def test_the_callback_exchanges_the_code_and_stores_the_installation(
    webhook: Any, marketplace: FakeGhl, lambda_context: Any
) -> None:
    status, page = install(webhook, lambda_context, marketplace)
    assert status == 200
    assert "leadflow is installed for loc-2" in page
    [call] = marketplace.calls("/oauth/token")
    assert call["form"] == {
        "client_id": "app-client", "client_secret": "app-secret", "grant_type": "authorization_code",
        "code": "code-1", "user_type": "Location", "redirect_uri": "https://leadflow.example/oauth/callback",
    }  # fmt: skip
    installation = stored()
    assert (installation.status, installation.user_type) == ("active", "Location")
    assert installation.access_token in marketplace.live
    assert installation.expires_at > time.time() + 86_000


def test_a_callback_without_a_code_is_a_400_page(webhook: Any, lambda_context: Any) -> None:
    event = function_url_event("/oauth/callback", b"", method="GET", query={"error": "access_denied"})
    response = webhook.lambda_handler(event, lambda_context)
    assert response["statusCode"] == 400
    assert response["headers"]["content-type"].startswith("text/html")
    assert "access_denied" in response["body"]


def test_a_code_ghl_refuses_is_a_502_page_and_nothing_is_stored(
    webhook: Any, marketplace: FakeGhl, lambda_context: Any
) -> None:
    event = function_url_event("/oauth/callback", b"", method="GET", query={"code": "never-issued"})
    response = webhook.lambda_handler(event, lambda_context)
    assert response["statusCode"] == 502
    assert "Nothing was stored" in response["body"]
    assert stored() is None


# --- tokens ------------------------------------------------------------------------------------------


def test_a_send_uses_the_locations_own_token(
    send: Any, webhook: Any, marketplace: FakeGhl, lambda_context: Any
) -> None:
    install(webhook, lambda_context, marketplace)
    seed_lead("hot-1", HOT, location_id=LOC, profile=NOON)
    assert deliver(send, lambda_context, job(location_id=LOC)) == {"batchItemFailures": []}
    [post] = marketplace.calls("/conversations/messages")
    assert post["headers"]["Authorization"] == f"Bearer {stored().access_token}"
    assert _history(LOC)[0]["status"] == "sent"


def _history(location_id: str, lead_id: str = "hot-1") -> list[dict[str, Any]]:
    from leadflow.followup_store import FollowupStore

    return FollowupStore().history(location_id, lead_id)


def test_eight_concurrent_senders_with_an_expiring_token_refresh_it_exactly_once(
    webhook: Any, marketplace: FakeGhl, lambda_context: Any
) -> None:
    from leadflow import installations

    install(webhook, lambda_context, marketplace)
    marketplace.refresh_delay = 0.3  # every sender arrives while the refresh is under way
    installations.table().update_item(
        Key={"location_id": LOC},
        UpdateExpression="SET expires_at = :e",
        ExpressionAttributeValues={":e": int(time.time() + 60)},  # inside the refresh-ahead margin
    )
    atomic(installations.table())
    with ThreadPoolExecutor(8) as pool:
        tokens = list(pool.map(lambda _: installations.token_for(LOC), range(8)))
    refreshes = [call["form"]["grant_type"] for call in marketplace.calls("/oauth/token")]
    assert refreshes == ["authorization_code", "refresh_token"], refreshes  # the install, and one refresh
    assert len(set(tokens)) == 1
    assert tokens[0] == stored().access_token
    assert tokens[0] in marketplace.live


def test_a_401_refreshes_the_token_once_and_the_message_goes_out(
    send: Any, webhook: Any, marketplace: FakeGhl, lambda_context: Any
) -> None:
    install(webhook, lambda_context, marketplace)
    marketplace.expire(stored().access_token)  # GHL revoked it before its time
    seed_lead("hot-1", HOT, location_id=LOC, profile=NOON)
    assert deliver(send, lambda_context, job(location_id=LOC)) == {"batchItemFailures": []}
    assert [r["path"] for r in marketplace.requests[1:]] == [
        "/conversations/messages", "/oauth/token", "/conversations/messages",
    ]  # fmt: skip
    assert _history(LOC)[0]["status"] == "sent"


def test_a_refused_refresh_marks_the_installation_and_nothing_is_sent(
    send: Any, webhook: Any, marketplace: FakeGhl, lambda_context: Any
) -> None:
    install(webhook, lambda_context, marketplace)
    marketplace.refreshable.clear()  # GHL no longer honours the refresh token
    marketplace.expire(stored().access_token)
    seed_lead("hot-1", HOT, location_id=LOC, profile=NOON)
    deliver(send, lambda_context, job(location_id=LOC))
    assert stored().status == "needs_reinstall"
    assert stored().access_token == ""
    before = len(marketplace.requests)
    deliver(send, lambda_context, job(location_id=LOC, job_id="job-2"))
    assert len(marketplace.requests) == before  # no call with a dead token
    latest = _history(LOC)[0]
    assert (latest["status"], latest["reason"]) == ("skipped", "not_installed")


def test_an_agency_install_gets_each_locations_token_from_its_company(
    send: Any, webhook: Any, marketplace: FakeGhl, lambda_context: Any
) -> None:
    status, page = install(
        webhook, lambda_context, marketplace, userType="Company", company_id="comp-9", approvedLocations=[LOC]
    )
    assert status == 200
    assert "comp-9" in page
    seed_lead("hot-1", HOT, location_id=LOC, profile=NOON)
    assert deliver(send, lambda_context, job(location_id=LOC)) == {"batchItemFailures": []}
    [token_call] = marketplace.calls("/oauth/locationToken")
    assert token_call["form"] == {"companyId": "comp-9", "locationId": LOC}
    assert token_call["headers"]["Version"] == "2021-07-28"
    [post] = marketplace.calls("/conversations/messages")
    assert post["headers"]["Authorization"] == f"Bearer {stored().access_token}"
    # And the location's token is kept until it expires: a second send asks for none
    deliver(send, lambda_context, job(location_id=LOC, job_id="job-2"))
    assert len(marketplace.calls("/oauth/locationToken")) == 1


# --- uninstall, not installed, GHL_API_KEY ---------------------------------------------------------


def test_uninstall_deletes_the_tokens_and_follow_ups_end_not_installed(
    send: Any, webhook: Any, marketplace: FakeGhl, lambda_context: Any
) -> None:
    import json

    install(webhook, lambda_context, marketplace)
    body = json.dumps({"type": "UNINSTALL", "appId": "app-1", "locationId": LOC}).encode()
    assert reply(webhook.lambda_handler(ghl_event(body), lambda_context)) == (200, {"status": "accepted"})
    assert stored() is None
    seed_lead("hot-1", HOT, location_id=LOC, profile=NOON)
    before = len(marketplace.requests)
    deliver(send, lambda_context, job(location_id=LOC))
    assert len(marketplace.requests) == before
    assert [(e["status"], e.get("reason")) for e in _history(LOC)] == [("skipped", "not_installed")]


def test_an_on_demand_send_to_a_location_without_the_app_is_409_not_installed(
    send: Any, marketplace: FakeGhl, lambda_context: Any
) -> None:
    seed_lead("hot-1", HOT, location_id="loc-9", profile=NOON)
    status, body = messages_api(send, lambda_context, "POST", "hot-1", query={"location_id": "loc-9"})
    assert (status, body["reason"]) == (409, "not_installed")


def test_ghl_api_key_keeps_serving_its_own_location_in_marketplace_mode(
    send: Any, marketplace: FakeGhl, monkeypatch: pytest.MonkeyPatch, lambda_context: Any
) -> None:
    token = marketplace._issue({}, refresh=False)["access_token"]
    monkeypatch.setenv("GHL_API_KEY", token)
    settings.cache_clear()
    seed_lead("hot-1", HOT, profile=NOON)  # loc-1, GHL_LOCATION_ID
    assert deliver(send, lambda_context, job()) == {"batchItemFailures": []}
    [post] = marketplace.calls("/conversations/messages")
    assert post["headers"]["Authorization"] == f"Bearer {token}"
    assert outbox() == []


def test_tokens_never_appear_in_logs(
    send: Any, webhook: Any, marketplace: FakeGhl, lambda_context: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    install(webhook, lambda_context, marketplace)
    marketplace.expire(stored().access_token)
    seed_lead("hot-1", HOT, location_id=LOC, profile=NOON)
    deliver(send, lambda_context, job(location_id=LOC))
    marketplace.refreshable.clear()
    marketplace.expire(stored().access_token)
    deliver(send, lambda_context, job(location_id=LOC, job_id="job-2"))
    captured = capsys.readouterr()
    logs = captured.out + captured.err
    assert "secret" not in logs  # every token the fake issues ends in "-secret", as does the client secret
    assert logs  # the runs did log
