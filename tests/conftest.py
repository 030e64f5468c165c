from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from tests.helpers import LambdaContext, RedisServer

BASE_ENV = {
    "GHL_LOCATION_ID": "loc-1",
    "POWERTOOLS_METRICS_NAMESPACE": "leadflow",
    "POWERTOOLS_SERVICE_NAME": "leadflow",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
}


def _clear_caches() -> None:
    from leadflow import compose, config, ghl, jobs, redis_client, sending

    for cached in (
        config.settings,
        redis_client.cache,
        jobs.sqs,
        sending._dlq_url,
        compose._claude,
        ghl.http,
    ):
        cached.cache_clear()


@pytest.fixture(autouse=True)
def _environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test starts from the base environment and fresh settings and clients."""
    for key in ("REDIS_URL", "GHL_API_KEY", "ANTHROPIC_API_KEY", "SEND_MODE", "REDIS_CLUSTER"):
        monkeypatch.delenv(key, raising=False)
    for key, value in BASE_ENV.items():
        monkeypatch.setenv(key, value)
    _clear_caches()
    yield
    _clear_caches()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch) -> str:
    """An empty database on the tests' own redis-server, set as REDIS_URL."""
    if redis_server.process is None:
        redis_server.start()
    redis.Redis.from_url(redis_server.url).flushdb()
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    _clear_caches()
    return redis_server.url


@pytest.fixture
def lambda_context() -> LambdaContext:
    return LambdaContext()
