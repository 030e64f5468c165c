"""The Redis client (the seed's cache service): one pool per process, reused across warm invocations.

- `get`/`set(ttl)`/`get_many`/`set_many`, one round trip each, values JSON-encoded;
- `rediss://` for TLS, AUTH from the URL; cluster mode (`REDIS_CLUSTER=true`, ElastiCache Serverless),
  where multi-key reads group by slot;
- short timeouts and one quick retry, behind a circuit breaker: after a few consecutive connection
  failures every call fails at once (StoreUnavailable) for a cool-down, then one trial call decides.
  In cluster mode a failover counts as such a failure too: CLUSTERDOWN while a replica takes over,
  a slot no node serves, a topology refresh that reached no node (redis-py follows MOVED/ASK itself).
  A slot on the move (TRYAGAIN) is StoreUnavailable for that call alone: the breaker stays closed.
"""

from __future__ import annotations

import functools
import json
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

import redis
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.cluster import RedisCluster
from redis.exceptions import (
    ClusterDownError,
    ClusterError,
    RedisClusterException,
    ResponseError,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from leadflow.config import settings
from leadflow.errors import StoreUnavailable

T = TypeVar("T")

SOCKET_TIMEOUT = 0.5
CONNECT_TIMEOUT = 0.5
MAX_CONNECTIONS = 50
TRANSIENT = (RedisConnectionError, RedisTimeoutError, OSError)


def unavailable(exc: BaseException) -> bool:
    """Whether an error means Redis cannot serve the call now (a failure for the breaker), rather than
    an answer. ClusterDownError is a ResponseError to redis-py, but no node answered for the key."""
    if isinstance(exc, (*TRANSIENT, ClusterDownError, SlotNotCoveredError)):
        return True
    # "Redis Cluster cannot be connected": the topology refresh after a connection error reached no node
    return isinstance(exc, RedisClusterException) and isinstance(exc.__cause__, TRANSIENT)


def resharding(exc: BaseException) -> bool:
    """Whether the call met a slot on the move between masters: a multi-key command (the record
    script) whose keys are split between the two, or new keys, answered TRYAGAIN until the move ends
    (redis-py retries it, then gives up with "TTL exhausted"). Redis is up: not a breaker failure."""
    return isinstance(exc, TryAgainError) or (isinstance(exc, ClusterError) and "TTL exhausted" in str(exc))


class _Cluster(RedisCluster):
    """RedisCluster whose pipelines never send again what a node already ran. When one node of a
    pipeline times out, redis-py re-sends the whole pipeline, every node's part included: a history
    entry pushed twice. Here only the commands that failed are sent again (once, by redis-py)."""

    def pipeline(self, transaction: Any = None, shard_hint: Any = None) -> Any:
        pipe = super().pipeline(transaction, shard_hint)
        pipe.retry = Retry(NoBackoff(), retries=0)
        return pipe


class CircuitBreaker:
    """Closed: calls go through. After `threshold` consecutive failures, open for `cooldown`
    seconds: calls fail at once. Then half-open: one call is let through; success closes it."""

    def __init__(self, threshold: int = 3, cooldown: float = 5.0, clock: Callable[[], float] = time.monotonic):
        self.threshold = threshold
        self.cooldown = cooldown
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._trial = False
        self._lock = threading.Lock()

    @property
    def is_open(self) -> bool:
        return self._opened_at is not None

    def allow(self) -> bool:
        with self._lock:
            if self._opened_at is None:
                return True
            if self._clock() - self._opened_at >= self.cooldown and not self._trial:
                self._trial = True
                return True
            return False

    def success(self) -> None:
        with self._lock:
            self._failures, self._opened_at, self._trial = 0, None, False

    def abandon(self) -> None:
        """A call ended with no verdict on Redis (not a connection error, not a reply): if it was the
        trial, let the next call be the trial instead of staying open for good."""
        with self._lock:
            self._trial = False

    def failure(self) -> None:
        with self._lock:
            self._failures += 1
            if self._trial or self._failures >= self.threshold:
                self._opened_at, self._trial = self._clock(), False


class Cache:
    def __init__(self, url: str, cluster: bool = False, breaker: CircuitBreaker | None = None) -> None:
        options: dict[str, Any] = {
            "socket_timeout": SOCKET_TIMEOUT,
            "socket_connect_timeout": CONNECT_TIMEOUT,
            "retry": Retry(ExponentialBackoff(cap=0.05, base=0.01), retries=1),
            "health_check_interval": 30,
            "decode_responses": True,
        }
        self.cluster = cluster
        self.client: Any
        if cluster:
            try:  # a cluster client reads the topology now: no node reachable is an outage, not a bug
                self.client = _Cluster.from_url(url, **options)
            except Exception as exc:
                if unavailable(exc):
                    raise StoreUnavailable(f"redis unavailable: {type(exc).__name__}") from exc
                raise
        else:
            self.client = redis.Redis.from_url(url, max_connections=MAX_CONNECTIONS, **options)
        self.breaker = breaker or CircuitBreaker()
        self._stale_topology = False

    def _refresh_topology(self) -> None:
        """After a cluster call failed for want of a node, read who serves which slot before the next
        call. redis-py refreshes it on a failed command but, for a pipeline, only every few failures:
        a pipeline-only caller (intake) kept sending to a dead master after its replica took over."""
        if self._stale_topology:
            self.client.nodes_manager.initialize()
            self._stale_topology = False

    def run(self, operation: Callable[[Any], T]) -> T:
        """Run `operation(client)` behind the circuit breaker; connection trouble is StoreUnavailable."""
        if not self.breaker.allow():
            raise StoreUnavailable("redis unavailable (circuit open)")
        try:
            self._refresh_topology()
            result = operation(self.client)
        except Exception as exc:
            if unavailable(exc):
                self._stale_topology = self.cluster
                self.breaker.failure()
                raise StoreUnavailable(f"redis unavailable: {type(exc).__name__}") from exc
            if resharding(exc):
                self.breaker.success()
                raise StoreUnavailable("redis is moving the slot: retry after the move") from exc
            if isinstance(exc, ResponseError):
                self.breaker.success()  # Redis answered, with an error: it is reachable
            else:
                self.breaker.abandon()
            raise
        self.breaker.success()
        return result

    def register_script(self, source: str) -> Any:
        return self.client.register_script(source)

    # The seed's cache API.
    def get(self, key: str) -> Any:
        raw = self.run(lambda r: r.get(key))
        return None if raw is None else json.loads(raw)

    def set(self, key: str, value: Any, ttl: int | None = None) -> None:
        payload = json.dumps(value)
        self.run(lambda r: r.set(key, payload, ex=ttl))

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        keys = list(keys)
        if not keys:
            return {}
        read = (lambda r: r.mget_nonatomic(keys)) if self.cluster else (lambda r: r.mget(keys))
        values = self.run(read)
        # Every value is JSON, so one parse of them joined as an array replaces a parse per value.
        decoded = json.loads("[" + ",".join("null" if v is None else v for v in values) + "]")
        return {k: v for k, v, raw in zip(keys, decoded, values, strict=True) if raw is not None}

    def set_many(self, items: Mapping[str, Any], ttl: int | None = None) -> None:
        if not items:
            return
        encoded = {k: json.dumps(v) for k, v in items.items()}

        def write(r: Any) -> None:
            pipe = r.pipeline(transaction=False)
            for key, payload in encoded.items():
                pipe.set(key, payload, ex=ttl)
            pipe.execute()

        self.run(write)

    def ping(self) -> bool:
        try:
            return bool(self.run(lambda r: r.ping()))
        except StoreUnavailable:
            return False

    def close(self) -> None:
        self.client.close()


@functools.cache
def cache() -> Cache:
    """The process's client, created on first use so tests can point REDIS_URL first."""
    config = settings()
    return Cache(config.redis_url, cluster=config.redis_cluster)
