from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis

from tests.helpers import LambdaContext, RedisClusterServers, RedisServer

# `LEADFLOW_TEST_CLUSTER=1` (make test-cluster): the tests that take `redis_url` run against the tests'
# own 6-node Redis cluster with REDIS_CLUSTER=true, and only they run.
CLUSTER_MODE = os.environ.get("LEADFLOW_TEST_CLUSTER") == "1"

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
    from leadflow import compose, config, ghl, jobs, redis_client, sending, writeback
    from leadflow.intake import contacts

    for cached in (
        config.settings,
        config._secrets,
        redis_client.cache,
        jobs.sqs,
        sending._redrive,
        compose._claude,
        ghl.http,
        writeback._sqs,
    ):
        cached.cache_clear()
    contacts._location_zones.clear()
    jobs._replay_seen.clear()


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


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisClusterServers]:
    """A Redis cluster of the tests' own (3 masters, 3 replicas), one per test process. No test kills
    one of its nodes, so a long node timeout: a node slow to answer on a loaded machine is not failed over."""
    cluster = RedisClusterServers(node_timeout_ms=5000)
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture
def cluster_url(redis_cluster: RedisClusterServers, monkeypatch: pytest.MonkeyPatch) -> str:
    """The tests' own Redis cluster, every master emptied, set as REDIS_URL with REDIS_CLUSTER=true."""
    redis_cluster.flushall()
    monkeypatch.setenv("REDIS_URL", redis_cluster.url)
    monkeypatch.setenv("REDIS_CLUSTER", "true")
    _clear_caches()
    return redis_cluster.url


@pytest.fixture
def redis_url(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """An empty database on the tests' own redis-server, set as REDIS_URL; with LEADFLOW_TEST_CLUSTER=1,
    the tests' own Redis cluster instead (REDIS_CLUSTER=true)."""
    if CLUSTER_MODE:
        return str(request.getfixturevalue("cluster_url"))
    redis_server: RedisServer = request.getfixturevalue("redis_server")
    if redis_server.process is None:
        redis_server.start()
    redis.Redis.from_url(redis_server.url).flushdb()
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    _clear_caches()
    return redis_server.url


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "standalone_redis(reason): needs the single redis-server; skipped when LEADFLOW_TEST_CLUSTER=1"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In cluster mode, keep only the tests on `redis_url`; skip those marked standalone_redis, saying why."""
    if not CLUSTER_MODE:
        return
    kept = [item for item in items if "redis_url" in getattr(item, "fixturenames", ())]
    config.hook.pytest_deselected(items=[item for item in items if item not in kept])
    items[:] = kept
    for item in kept:
        marker = item.get_closest_marker("standalone_redis")
        if marker:
            item.add_marker(pytest.mark.skip(reason=f"standalone Redis only: {marker.args[0]}"))


@pytest.fixture
def lambda_context() -> LambdaContext:
    return LambdaContext()


@dataclass
class Queues:
    client: Any
    followup: str
    followup_dlq: str
    intake: str
    intake_dlq: str

    def receive(self, url: str, max_messages: int = 10) -> list[dict[str, Any]]:
        """Everything on a queue now (several receives; messages stay in flight afterwards)."""
        messages: list[dict[str, Any]] = []
        while True:
            batch = self.client.receive_message(QueueUrl=url, MaxNumberOfMessages=max_messages).get("Messages", [])
            if not batch:
                return messages
            messages += batch

    def jobs(self) -> list[dict[str, Any]]:
        """The follow-up jobs on the follow-up queue now (bodies), write-backs (`"kind": "sync"`) aside."""
        bodies = [json.loads(m["Body"]) for m in self.receive(self.followup)]
        return [body for body in bodies if body.get("kind") != "sync"]


@pytest.fixture
def queues(monkeypatch: pytest.MonkeyPatch) -> Iterator[Queues]:
    """moto SQS with the template's queues (each with a dead-letter queue), set in the environment."""
    import boto3
    from moto import mock_aws

    with mock_aws():
        client = boto3.client("sqs", region_name="us-east-1")

        def with_dlq(name: str) -> tuple[str, str]:
            dlq = client.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
            arn = client.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            policy = json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": "5"})
            url = client.create_queue(QueueName=name, Attributes={"RedrivePolicy": policy})["QueueUrl"]
            return url, dlq

        followup, followup_dlq = with_dlq("leadflow-followups")
        intake, intake_dlq = with_dlq("leadflow-intake")
        monkeypatch.setenv("FOLLOWUP_QUEUE_URL", followup)
        monkeypatch.setenv("INTAKE_QUEUE_URL", intake)
        _clear_caches()
        yield Queues(client, followup, followup_dlq, intake, intake_dlq)
        _clear_caches()
