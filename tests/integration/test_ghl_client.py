"""The one GHL client: each endpoint's method, path and Version header; a request made again only when
that is safe (never a POST that creates something once GHL may have acted); typed errors; and no
request at all without a token, or when the last chance to stop (before_post) says stop."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import parse_qs

import pytest

from leadflow import ghl
from leadflow.config import settings
from tests.helpers import CLOSE, StubServer, VirtualClock, free_port, raw_redis


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture
def api(redis_url: str, clock: VirtualClock, monkeypatch: pytest.MonkeyPatch) -> Iterator[StubServer]:
    server = StubServer({}, clock=clock)
    monkeypatch.setenv("GHL_API_KEY", "pit-test-token")
    monkeypatch.setenv("GHL_API_BASE_URL", server.url)
    settings.cache_clear()
    yield server
    server.close()


def call(clock: VirtualClock, endpoint: ghl.Endpoint, *ids: str, **kwargs: object) -> dict[str, object]:
    return ghl.call("loc-1", endpoint, *ids, limiter=ghl.RateLimiter(clock=clock), sleep=clock.sleep, **kwargs)  # type: ignore[arg-type]


def test_the_version_table_follows_ghls_reference() -> None:
    by_path = {(e.method, e.path): e.version for e in ghl.ENDPOINTS}
    assert by_path[("POST", "/conversations/messages")] == "2021-04-15"
    assert {v for (_, path), v in by_path.items() if path.startswith(("/contacts", "/locations"))} == {"2021-07-28"}
    assert by_path[("POST", "/oauth/locationToken")] == "2021-07-28"
    assert by_path[("POST", "/oauth/token")] is None


@pytest.mark.parametrize(
    ("endpoint", "ids", "key"),
    [
        (ghl.UPDATE_CONTACT, ("c-1",), "PUT /contacts/c-1"),
        (ghl.ADD_TAGS, ("c-1",), "POST /contacts/c-1/tags"),
        (ghl.REMOVE_TAGS, ("c-1",), "DELETE /contacts/c-1/tags"),
        (ghl.CREATE_TASK, ("c-1",), "POST /contacts/c-1/tasks"),
        (ghl.LIST_CUSTOM_FIELDS, ("loc-1",), "GET /locations/loc-1/customFields"),
        (ghl.CREATE_CUSTOM_FIELD, ("loc-1",), "POST /locations/loc-1/customFields"),
    ],
)
def test_each_write_back_call_carries_its_version_token_and_body(
    api: StubServer, clock: VirtualClock, endpoint: ghl.Endpoint, ids: tuple[str, ...], key: str
) -> None:
    api.replies[key] = [(200, {}, {"ok": True})]
    body = None if endpoint.method == "GET" else {"tags": ["leadflow:hot"]}
    assert call(clock, endpoint, *ids, json=body) == {"ok": True}
    [request] = api.calls(key)
    assert request["headers"]["Version"] == "2021-07-28"
    assert request["headers"]["Authorization"] == "Bearer pit-test-token"
    assert request["json"] == body


def test_ids_are_data_in_paths(api: StubServer, clock: VirtualClock) -> None:
    api.replies["GET /contacts/a%2Fb%3F%7Bx%7D"] = [(200, {}, {"contact": {}})]
    call(clock, ghl.GET_CONTACT, "a/b?{x}")
    assert len(api.requests) == 1
    with pytest.raises(ValueError, match="takes 1 ids"):
        ghl.GET_CONTACT.url_path()


def test_the_token_exchange_is_form_encoded_without_a_bearer_or_version(api: StubServer, clock: VirtualClock) -> None:
    api.replies["POST /oauth/token"] = [(200, {}, {"access_token": "at", "refresh_token": "rt", "expires_in": 86399})]
    form = {"grant_type": "refresh_token", "client_id": "id", "client_secret": "secret", "refresh_token": "old"}
    assert call(clock, ghl.OAUTH_TOKEN, form=form)["access_token"] == "at"
    [request] = api.calls("POST /oauth/token")
    assert "Authorization" not in request["headers"]
    assert "Version" not in request["headers"]
    assert request["headers"]["Content-Type"] == "application/x-www-form-urlencoded"
    assert parse_qs(request["raw"].decode()) == {k: [v] for k, v in form.items()}


def test_a_refused_token_exchange_carries_ghls_error(api: StubServer, clock: VirtualClock) -> None:
    api.replies["POST /oauth/token"] = [(400, {}, {"error": "invalid_grant", "error_description": "used"})]
    with pytest.raises(ghl.PermanentFailure) as caught:
        call(clock, ghl.OAUTH_TOKEN, form={"grant_type": "refresh_token"})
    assert (caught.value.status, caught.value.body["error"]) == (400, "invalid_grant")


# Made again only when that is safe


def test_an_idempotent_call_whose_outcome_is_unknown_is_made_again(api: StubServer, clock: VirtualClock) -> None:
    api.replies["GET /contacts/c-1"] = [(CLOSE, {}, None), (200, {}, {"contact": {"id": "c-1"}})]
    assert call(clock, ghl.GET_CONTACT, "c-1") == {"contact": {"id": "c-1"}}
    assert len(api.requests) == 2


@pytest.mark.parametrize("endpoint", [ghl.SEND_MESSAGE, ghl.CREATE_TASK, ghl.CREATE_CUSTOM_FIELD, ghl.OAUTH_TOKEN])
def test_a_post_whose_outcome_is_unknown_is_never_made_again(
    api: StubServer, clock: VirtualClock, endpoint: ghl.Endpoint
) -> None:
    ids = ("c-1",) if "{contactId}" in endpoint.path else ("loc-1",) if "{" in endpoint.path else ()
    api.replies[f"POST {endpoint.url_path(*ids)}"] = [(CLOSE, {}, None), (200, {}, {})]
    with pytest.raises(ghl.OutcomeUnknown):
        call(clock, endpoint, *ids, json={})
    assert len(api.requests) == 1


def test_a_5xx_is_made_again_when_idempotent_and_handed_back_when_not(api: StubServer, clock: VirtualClock) -> None:
    api.replies["PUT /contacts/c-1"] = [(502, {}, {}), (200, {}, {"succeded": True})]
    assert call(clock, ghl.UPDATE_CONTACT, "c-1", json={}) == {"succeded": True}
    api.replies["POST /contacts/c-1/tasks"] = [(503, {}, {"message": "Unavailable"})]
    with pytest.raises(ghl.TransientFailure) as caught:
        call(clock, ghl.CREATE_TASK, "c-1", json={})
    assert caught.value.status == 503
    assert len(api.calls("POST /contacts/c-1/tasks")) == 1  # SQS retries the job, through its checks again


def test_a_connect_error_is_retried_within_the_budget_then_transient(
    redis_url: str, clock: VirtualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GHL_API_KEY", "pit-test-token")
    monkeypatch.setenv("GHL_API_BASE_URL", f"http://127.0.0.1:{free_port()}")
    settings.cache_clear()
    attempts: list[float] = []
    start = clock()
    with pytest.raises(ghl.TransientFailure, match="network: ConnectError"):
        call(clock, ghl.SEND_MESSAGE, json={}, before_post=lambda: attempts.append(clock()))
    assert len(attempts) == ghl.MAX_ATTEMPTS  # a request that never left may be made again, even a POST
    assert clock() - start <= ghl.MAX_WAIT


@pytest.mark.parametrize(
    ("status", "kind"), [(401, ghl.Unauthorized), (404, ghl.NotFound), (422, ghl.PermanentFailure)]
)
def test_refusals_are_typed(api: StubServer, clock: VirtualClock, status: int, kind: type[ghl.GhlError]) -> None:
    api.replies["GET /contacts/c-1"] = [(status, {}, {"message": ["first problem", "second"]})]
    with pytest.raises(kind) as caught:
        call(clock, ghl.GET_CONTACT, "c-1")
    assert type(caught.value) is kind
    assert caught.value.reason == f"ghl_{status}: first problem; second"
    assert len(api.requests) == 1


# No request when there is no token, or when the last check says stop


def test_without_a_token_nothing_is_sent_and_nothing_counted(
    api: StubServer, clock: VirtualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    from leadflow.ghl import tokens

    monkeypatch.setattr(tokens, "token_for", lambda location_id: None)
    with pytest.raises(ghl.NotInstalled) as caught:
        call(clock, ghl.SEND_MESSAGE, json={})
    assert (caught.value.reason, caught.value.location_id) == ("not_installed", "loc-1")
    assert api.requests == []
    assert raw_redis(settings().redis_url).zcard("lf:{loc-1}:ghl-window") == 0


def test_before_post_runs_after_the_wait_and_can_stop_the_request(api: StubServer, clock: VirtualClock) -> None:
    ghl.RateLimiter(clock=clock).block("loc-1", 4.0)
    start, seen = clock(), []

    def stop() -> None:
        seen.append(clock() - start)
        raise RuntimeError("opted out while waiting")

    with pytest.raises(RuntimeError):
        call(clock, ghl.SEND_MESSAGE, json={}, before_post=stop)
    assert seen == [pytest.approx(4.0)]
    assert api.requests == []
