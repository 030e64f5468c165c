"""The Redis client in cluster mode, on the tests' own 6-node cluster: what a failover throws at it
(CLUSTERDOWN, a cluster no node of which answers) is StoreUnavailable and counts against the circuit
breaker, and a pipeline spread over two masters, one of which stops answering, never runs the other
master's part twice. (The failover itself: test_cluster_failover.py.)"""

from __future__ import annotations

import time
from typing import Any

import pytest
from redis.crc import key_slot
from redis.exceptions import ClusterDownError

from leadflow.errors import StoreUnavailable
from leadflow.redis_client import Cache, CircuitBreaker
from tests.helpers import RedisClusterServers, free_port


def owner(cluster: RedisClusterServers, key: str) -> int:
    return cluster.owner(key_slot(key.encode()))


def keys_on_two_masters(cluster: RedisClusterServers) -> tuple[str, str]:
    """Two keys (hash tags) served by two different masters."""
    first = "{a}"
    for tag in "bcdefghijklmnop":
        if owner(cluster, "{" + tag + "}") != owner(cluster, first):
            return first, "{" + tag + "}"
    raise AssertionError("every key on one master")


def test_a_pipeline_whose_other_master_timed_out_runs_each_part_once(
    cluster_url: str, redis_cluster: RedisClusterServers
) -> None:
    # Given a pipeline over two masters, and the second one holding every command past the timeout
    client = Cache(cluster_url, cluster=True)
    history, stats = keys_on_two_masters(redis_cluster)
    client.ping()
    redis_cluster.node(owner(redis_cluster, stats)).execute_command("CLIENT", "PAUSE", 1200, "ALL")

    def end_job(r: Any) -> None:  # FollowupStore.log's shape: a history entry here, a count there
        pipe = r.pipeline(transaction=False)
        pipe.lpush(history + ":messages", "sent")
        pipe.hincrby(stats + ":stats", "sent", 1)
        pipe.execute()

    # When the pipeline runs: the first master answers, the second times out
    with pytest.raises(StoreUnavailable, match="TimeoutError"):
        client.run(end_job)
    time.sleep(1.3)  # the pause is over: whatever Redis kept would have run by now
    # Then the history entry is there once (redis-py used to send the whole pipeline again), the
    # count not at all (its connection closed before Redis ran it), and the breaker counted a failure
    raw = redis_cluster.client()
    assert raw.lrange(history + ":messages", 0, -1) == ["sent"]
    assert raw.hget(stats + ":stats", "sent") is None
    assert client.breaker._failures == 1
    client.close()


def test_clusterdown_is_store_unavailable_and_a_breaker_failure(cluster_url: str) -> None:
    client = Cache(cluster_url, cluster=True, breaker=CircuitBreaker(threshold=2, cooldown=60))

    def cluster_down(r: Any) -> None:
        raise ClusterDownError("CLUSTERDOWN The cluster is down")  # what a node says mid-failover

    for _ in range(2):
        with pytest.raises(StoreUnavailable, match="ClusterDownError"):
            client.run(cluster_down)
    assert client.breaker.is_open  # before this fix: a ResponseError, so Redis counted as healthy
    client.close()


def test_a_cluster_with_no_node_answering_is_store_unavailable_from_the_start() -> None:
    # A cluster client reads the topology when it is made: no node reachable is an outage, not a bug
    with pytest.raises(StoreUnavailable, match="RedisClusterException"):
        Cache(f"redis://127.0.0.1:{free_port()}/0", cluster=True)
