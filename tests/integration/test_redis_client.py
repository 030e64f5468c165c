"""The Redis client against real redis-servers: JSON round trips, one round trip per batch, a
circuit breaker that fails fast while Redis is down and recovers on its own, TLS by URL."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from redis.connection import SSLConnection

from leadflow.errors import StoreUnavailable
from leadflow.redis_client import Cache, CircuitBreaker, cache
from tests.helpers import RedisServer, count_round_trips, raw_redis

COOLDOWN = 0.3


@pytest.fixture
def store(redis_url: str) -> Iterator[Cache]:
    from leadflow.config import settings

    client = Cache(redis_url, cluster=settings().redis_cluster)
    yield client
    client.close()


@pytest.fixture
def server() -> Iterator[RedisServer]:
    """A redis-server of this test's own, which it may stop and start."""
    own = RedisServer()
    own.start()
    yield own
    own.stop()


@pytest.fixture
def dead(server: RedisServer) -> Iterator[Cache]:
    """A client whose Redis has died, its breaker opened by three failed calls."""
    client = Cache(server.url, breaker=CircuitBreaker(threshold=3, cooldown=COOLDOWN))
    client.set("before", 1)
    server.stop()
    for _ in range(3):
        with pytest.raises(StoreUnavailable):
            client.get("before")
    yield client
    client.close()


def commands(raw: Any, since: dict[str, int]) -> dict[str, int]:
    """Calls per command since `since`, as the server counts them (every master of a cluster),
    leaving out `raw`'s own INFO."""
    if isinstance(raw, redis.RedisCluster):
        per_node = raw.info("commandstats", target_nodes=redis.RedisCluster.PRIMARIES).values()
    else:
        per_node = [raw.info("commandstats")]
    now: dict[str, int] = {}
    for stats in per_node:
        for name, value in stats.items():
            now[name.removeprefix("cmdstat_")] = now.get(name.removeprefix("cmdstat_"), 0) + int(value["calls"])
    return {n: calls - since.get(n, 0) for n, calls in now.items() if calls != since.get(n, 0) and n != "info"}


def expected_round_trips(store: Cache, keys: list[str]) -> int:
    """One per server holding the keys: one, or in cluster mode one per master (commands grouped by slot)."""
    if not store.cluster:
        return 1
    return len({store.client.get_node_from_key(key).name for key in keys})


def expected_mgets(store: Cache, keys: list[str]) -> int:
    """One MGET, or in cluster mode one per slot (a multi-key command stays in one slot)."""
    return len({store.client.keyslot(key) for key in keys}) if store.cluster else 1


def test_set_and_get_round_trip_json_values(store: Cache) -> None:
    value = {"lead": "a", "score": 71.5, "signals": ["pricing_tool_usage"], "hot": True, "none": None}
    store.set("k", value)
    assert store.get("k") == value


def test_a_missing_key_reads_as_none(store: Cache) -> None:
    assert store.get("absent") is None


def test_set_with_ttl_expires_the_key(store: Cache, redis_url: str) -> None:
    store.set("k", "v", ttl=60)
    assert 0 < raw_redis(redis_url).ttl("k") <= 60


def test_set_without_ttl_keeps_the_key(store: Cache, redis_url: str) -> None:
    store.set("k", "v")
    assert raw_redis(redis_url).ttl("k") == -1


def test_set_many_and_get_many_round_trip_json_values(store: Cache) -> None:
    items = {f"k{i}": {"i": i, "tags": [str(i)]} for i in range(50)}
    store.set_many(items)
    assert store.get_many(items) == items


def test_get_many_leaves_out_missing_keys(store: Cache) -> None:
    store.set_many({"a": 1, "c": [3]})
    assert store.get_many(["a", "b", "c"]) == {"a": 1, "c": [3]}


def test_get_many_of_no_keys_asks_nothing(store: Cache) -> None:
    assert store.get_many([]) == {}


def test_set_many_with_ttl_expires_every_key(store: Cache, redis_url: str) -> None:
    store.set_many({"a": 1, "b": 2}, ttl=30)
    raw = raw_redis(redis_url)
    assert all(0 < raw.ttl(k) <= 30 for k in ("a", "b"))


def test_get_many_of_100_keys_is_one_command_on_the_server(store: Cache, redis_url: str) -> None:
    keys = [f"k{i}" for i in range(100)]
    store.set_many(dict.fromkeys(keys, 1))
    raw = raw_redis(redis_url)
    before = commands(raw, {})
    store.get_many(keys)
    assert commands(raw, before) == {"mget": expected_mgets(store, keys)}


def test_get_many_of_100_keys_is_one_round_trip(store: Cache, monkeypatch: pytest.MonkeyPatch) -> None:
    keys = [f"k{i}" for i in range(100)]
    store.set_many(dict.fromkeys(keys, 1))
    store.ping()  # the connection is open and health-checked before counting
    sent = count_round_trips(monkeypatch)
    store.get_many(keys)
    assert len(sent) == expected_round_trips(store, keys)


def test_set_many_of_100_keys_is_one_round_trip(store: Cache, monkeypatch: pytest.MonkeyPatch) -> None:
    keys = [f"k{i}" for i in range(100)]
    store.set_many(dict.fromkeys(keys, 0))  # every connection open and health-checked before counting
    sent = count_round_trips(monkeypatch)
    store.set_many({key: i for i, key in enumerate(keys)})
    assert len(sent) == expected_round_trips(store, keys)


def test_a_dead_redis_opens_the_breaker(dead: Cache) -> None:
    assert dead.breaker.is_open


def test_with_the_breaker_open_every_call_fails_in_milliseconds(dead: Cache) -> None:
    for call in (lambda: dead.get("k"), lambda: dead.set("k", 1), lambda: dead.get_many(["a", "b"])):
        started = time.perf_counter()
        with pytest.raises(StoreUnavailable, match="circuit open"):
            call()
        assert time.perf_counter() - started < 0.050


def test_the_client_recovers_on_its_own_once_redis_is_back(dead: Cache, server: RedisServer) -> None:
    # Given Redis back up (empty: it keeps nothing on disk)
    server.start()
    # When the cool-down has passed
    time.sleep(COOLDOWN + 0.05)
    # Then the same client works again and its breaker is closed
    dead.set("after", {"ok": True})
    assert (dead.get("after"), dead.breaker.is_open) == ({"ok": True}, False)


def test_ping_reports_a_dead_redis_as_false_instead_of_raising(dead: Cache) -> None:
    assert dead.ping() is False


def test_a_server_error_is_not_a_connection_failure(store: Cache) -> None:
    store.run(lambda r: r.set("text", "x"))
    with pytest.raises(redis.ResponseError):
        store.run(lambda r: r.lpush("text", "y"))
    assert (store.breaker.is_open, store.breaker._failures) == (False, 0)


def test_a_rediss_url_uses_tls_with_the_url_password() -> None:
    client = Cache("rediss://:s3cret@cache.example.com:6380/2")
    pool = client.client.connection_pool
    assert pool.connection_class is SSLConnection
    assert {k: pool.connection_kwargs[k] for k in ("host", "port", "password", "db")} == {
        "host": "cache.example.com",
        "port": 6380,
        "password": "s3cret",
        "db": 2,
    }


def test_a_redis_url_uses_plain_tcp() -> None:
    assert Cache("redis://cache.example.com:6379/0").client.connection_pool.connection_class is not SSLConnection


def test_the_process_client_is_created_once_from_redis_url(redis_url: str) -> None:
    first = cache()
    port = int(redis_url.rsplit(":", 1)[1].split("/", maxsplit=1)[0])
    if first.cluster:  # the URL's node is where the client found the cluster
        assert (cache() is first, first.client.get_node("127.0.0.1", port) is not None) == (True, True)
    else:
        assert (cache() is first, first.client.connection_pool.connection_kwargs["port"]) == (True, port)
