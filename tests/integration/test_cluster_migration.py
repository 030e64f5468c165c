"""A slot moving between masters (resharding, as ElastiCache does when it scales) while events are
recorded. While a lead's keys are on the move, the old master answers its record script with ASK and
the new one with TRYAGAIN (a multi-key script whose keys are new there: its event's seen key), so the
call is StoreUnavailable (the webhook spills it for the replay) without opening the circuit breaker;
the other lead of the same pipeline is recorded once. Once the slot is the new master's, the old one
answers MOVED, the client follows it, and the replayed events are recorded: each event once.

The cluster is this module's own (3 masters, 3 replicas): the test moves one of its slots."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from redis.crc import key_slot

from leadflow.errors import StoreUnavailable
from leadflow.lead_state import Event, lead_key
from leadflow.signals import Signal
from tests.conftest import _clear_caches
from tests.helpers import RedisClusterServers

LOC = "loc-1"


@pytest.fixture(scope="module")
def own_cluster() -> Iterator[RedisClusterServers]:
    cluster = RedisClusterServers(node_timeout_ms=5000)
    cluster.start()
    yield cluster
    cluster.stop()


def slot_of(contact: str) -> int:
    return key_slot(lead_key(LOC, contact).encode())


def errors(cluster: RedisClusterServers, port: int, kind: str) -> int:
    return int(cluster.node(port).info("errorstats").get(f"errorstat_{kind}", {}).get("count", 0))


def node_id(cluster: RedisClusterServers, port: int) -> str:
    return str(cluster.node(port).execute_command("CLUSTER", "MYID"))


def test_a_slot_moving_mid_stream_is_followed_through_ask_then_moved(
    own_cluster: RedisClusterServers, monkeypatch: pytest.MonkeyPatch
) -> None:
    from leadflow.lead_state import LeadStore
    from leadflow.redis_client import cache

    # Given two leads on one master, in different slots, each with an event recorded
    cluster = own_cluster
    cluster.flushall()
    moving = "moving-0"
    source = cluster.owner(slot_of(moving))
    staying = next(c for i in range(1000) if (c := f"staying-{i}") and cluster.owner(slot_of(c)) == source)
    assert slot_of(staying) != slot_of(moving)
    target = next(port for port in cluster.masters() if port != source)
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{target}/0")
    monkeypatch.setenv("REDIS_CLUSTER", "true")
    _clear_caches()
    store = LeadStore()

    def record(suffix: str) -> list[bool]:
        """One event on each lead, in one pipelined call as intake makes it; which were duplicates."""
        events = [Event(LOC, c, Signal.LISTING_VIEW, event_id=f"{c}-{suffix}") for c in (moving, staying)]
        return [result.duplicate for result in store.record_many(events)]

    assert record("1") == [False, False]

    # When the moving lead's slot starts moving to another master and its keys are moved already
    slot = slot_of(moving)
    cluster.node(target).execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", node_id(cluster, source))
    cluster.node(source).execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", node_id(cluster, target))
    keys = cluster.node(source).execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100)
    assert len(keys) >= 2  # the lead's hash and its event's seen key at least
    cluster.node(source).execute_command("MIGRATE", "127.0.0.1", target, "", 0, 5000, "KEYS", *keys)
    asks = errors(cluster, source, "ASK")

    # Then the old master answers ASK, the new one TRYAGAIN: the call is StoreUnavailable, the
    # breaker still closed, and the other lead's event is recorded (its replay will be a duplicate)
    with pytest.raises(StoreUnavailable, match="moving the slot"):
        record("2")
    assert errors(cluster, source, "ASK") > asks
    assert errors(cluster, target, "TRYAGAIN") > 0
    assert (cache().breaker.is_open, cache().breaker._failures) == (False, 0)
    assert store.load(LOC, staying).signals[Signal.LISTING_VIEW].count == 2  # type: ignore[union-attr]

    # When the move ends (every master told the slot is the new master's)
    for port in cluster.masters():
        cluster.node(port).execute_command("CLUSTER", "SETSLOT", slot, "NODE", node_id(cluster, target))
    cluster.wait_until_ok()
    moved = errors(cluster, source, "MOVED")

    # Then the replay of the spilled events is followed there through MOVED: the moving lead's is
    # recorded, the other's a duplicate; the next events are recorded on both
    assert record("2") == [False, True]
    assert errors(cluster, source, "MOVED") > moved
    assert cluster.owner(slot) == target
    assert record("3") == [False, False]

    # And each lead holds each of its three events once; the breaker never counted a failure
    for contact in (moving, staying):
        state = store.load(LOC, contact)
        assert state is not None
        assert state.signals[Signal.LISTING_VIEW].count == 3
    assert (cache().breaker.is_open, cache().breaker._failures) == (False, 0)
