"""Lead state in Redis: the Lua script agrees with Python's LeadState.add, events de-duplicate, the
profile round-trips, the score index drives an exact top-k, and all of it works on a Redis cluster."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.crc import key_slot

from leadflow import lead_state
from leadflow.lead import LeadState
from leadflow.lead_state import Event as Recording
from leadflow.lead_state import LeadStore, decode_state, encode_profile, index_key, lead_key, lead_prefix
from leadflow.redis_client import cache
from leadflow.scoring import likelihood
from leadflow.signals import Signal
from tests.helpers import raw_redis

T0 = 1_795_000_000.0  # a fixed `now` (2026-11-18 UTC)
HOUR = 3600.0
DAY = 86_400.0
LOC = "loc-1"

Event = tuple[Signal, float]  # (signal, epoch seconds)


@pytest.fixture
def store(redis_url: str) -> LeadStore:
    return LeadStore()


def python_state(events: list[Event]) -> LeadState:
    state = LeadState()
    for signal, at in events:
        state.add(signal, at)
    return state


def record_all(store: LeadStore, contact_id: str, events: list[Event], location: str = LOC) -> None:
    for signal, at in events:
        store.record(location, contact_id, signal=signal, at=at, now=T0)


def random_events(rng: random.Random, most: int = 15, days: float = 10) -> list[Event]:
    return [
        (rng.choice(list(Signal)), float(int(T0 - rng.uniform(0, days * DAY)))) for _ in range(rng.randint(0, most))
    ]


def assert_same_counters(a: LeadState, b: LeadState) -> None:
    assert a.signals.keys() == b.signals.keys()
    for signal, sa in a.signals.items():
        sb = b.signals[signal]
        assert (sa.count, sa.last) == (sb.count, sb.last)
        assert sa.decayed == pytest.approx(sb.decayed, rel=1e-9)
        assert sa.long == pytest.approx(sb.long, rel=1e-9)
    assert a.hours_utc == b.hours_utc


# The Lua script and Python agree

whole_second_events = st.lists(
    st.tuples(st.sampled_from(list(Signal)), st.integers(0, int(30 * DAY)).map(lambda age: T0 - age)),
    min_size=1,
    max_size=25,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(whole_second_events, st.randoms(use_true_random=False))
def test_recording_through_lua_in_any_order_gives_python_counters(
    store: LeadStore, events: list[Event], rng: random.Random
) -> None:
    contact_id = uuid.uuid4().hex
    shuffled = list(events)
    rng.shuffle(shuffled)
    record_all(store, contact_id, shuffled)
    stored = store.load(LOC, contact_id)
    assert stored is not None
    assert_same_counters(stored, python_state(events))


def test_record_returns_the_new_state_and_its_likelihood_now(store: LeadStore) -> None:
    store.record(LOC, "c1", signal=Signal.PRICING_TOOL_USAGE, at=T0 - 2 * HOUR, now=T0)
    recorded = store.record(LOC, "c1", signal=Signal.AGENT_INQUIRY, at=T0 - HOUR, now=T0)
    assert recorded is not None
    expected = python_state([(Signal.PRICING_TOOL_USAGE, T0 - 2 * HOUR), (Signal.AGENT_INQUIRY, T0 - HOUR)])
    assert recorded.likelihood == likelihood(expected, T0)


# De-duplication


def test_an_event_id_seen_before_is_a_duplicate_returning_the_state_as_it_is(store: LeadStore) -> None:
    first = store.record(LOC, "c1", signal=Signal.LISTING_VIEW, at=T0 - HOUR, event_id="evt-1", now=T0)
    again = store.record(LOC, "c1", signal=Signal.LISTING_VIEW, at=T0 - HOUR, event_id="evt-1", now=T0)
    assert (first.duplicate, again.duplicate) == (False, True)
    assert again.state == first.state


def test_a_duplicate_changes_nothing(store: LeadStore, redis_url: str) -> None:
    store.record(LOC, "c1", signal=Signal.LISTING_VIEW, at=T0 - HOUR, event_id="evt-1", now=T0)
    raw = raw_redis(redis_url, decode_responses=True)
    before = raw.hgetall(lead_key(LOC, "c1"))
    store.record(LOC, "c1", signal=Signal.LISTING_VIEW, at=T0, event_id="evt-1", fields={"p:state": "FL"}, now=T0)
    assert raw.hgetall(lead_key(LOC, "c1")) == before


def test_events_without_an_id_always_count(store: LeadStore) -> None:
    record_all(store, "c1", [(Signal.LISTING_VIEW, T0 - HOUR)] * 3)
    stored = store.load(LOC, "c1")
    assert stored is not None
    assert stored.signals[Signal.LISTING_VIEW].count == 3


def test_the_same_event_id_of_another_lead_is_not_a_duplicate(store: LeadStore) -> None:
    store.record(LOC, "c1", signal=Signal.LISTING_VIEW, at=T0, event_id="evt-1", now=T0)
    assert not store.record(LOC, "c2", signal=Signal.LISTING_VIEW, at=T0, event_id="evt-1", now=T0).duplicate


# The profile


def test_profile_fields_are_set_and_read_back(store: LeadStore) -> None:
    profile = {
        "first_name": "Ana",
        "timezone": "America/Los_Angeles",
        "state": "FL",
        "area_code": "305",
        "has_email": False,
        "dnd": True,
        "dnd_channels": frozenset({"sms", "email"}),
    }
    store.record(LOC, "c1", fields=encode_profile(profile), now=T0)
    stored = store.load(LOC, "c1")
    assert stored is not None
    assert {name: getattr(stored.profile, name) for name in profile} == profile


def test_a_profile_field_set_to_none_is_cleared_and_others_kept(store: LeadStore) -> None:
    store.record(LOC, "c1", fields=encode_profile({"first_name": "Ana", "state": "FL"}), now=T0)
    store.record(LOC, "c1", fields=encode_profile({"first_name": None}), now=T0)
    stored = store.load(LOC, "c1")
    assert stored is not None
    assert (stored.profile.first_name, stored.profile.state) == (None, "FL")


def test_a_profile_only_update_records_no_signal(store: LeadStore) -> None:
    store.record(LOC, "c1", fields=encode_profile({"first_name": "Ana"}), now=T0)
    stored = store.load(LOC, "c1")
    assert stored is not None
    assert (stored.signals, sum(stored.hours_utc)) == ({}, 0)


def test_encoding_an_unknown_profile_field_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown profile field 'phone'"):
        encode_profile({"phone": "+13055550100"})


def test_decode_state_reads_what_encode_profile_wrote() -> None:
    fields = encode_profile({"dnd_channels": frozenset({"call"}), "has_phone": False})
    profile = decode_state(fields).profile
    assert (profile.dnd_channels, profile.has_phone) == (frozenset({"call"}), False)


# The score index


def test_the_score_index_holds_the_likelihood_at_the_last_update(store: LeadStore, redis_url: str) -> None:
    record_all(store, "c1", [(Signal.PRICING_TOOL_USAGE, T0 - HOUR), (Signal.AGENT_INQUIRY, T0 - 3 * HOUR)])
    stored = store.load(LOC, "c1")
    assert stored is not None
    indexed = raw_redis(redis_url).zscore(index_key(LOC), "c1")
    exact = likelihood(stored, T0)  # 55.9, its value lying just below 55.95
    assert indexed == (exact if cache().cluster else exact + 0.1)  # the script rounds up (see below)


def test_the_script_indexes_scorings_likelihood_rounded_up_to_the_tenth(store: LeadStore, redis_url: str) -> None:
    """The record script computes the index's value itself (one round trip per event): for any
    history, never below scoring's likelihood (the monitor would miss the lead), at most a tenth above."""
    leads = populate(store, 300, seed=13)
    indexed = dict(raw_redis(redis_url, decode_responses=True).zscan_iter(index_key(LOC)))
    for contact_id in leads:
        state = store.load(LOC, contact_id)
        assert state is not None
        exact = likelihood(state, T0)
        assert exact <= float(indexed[contact_id]) <= exact + 0.1 + 1e-9, contact_id


def test_every_recorded_location_is_listed(store: LeadStore) -> None:
    store.record("loc-a", "c1", signal=Signal.LISTING_VIEW, at=T0, now=T0)
    store.record("loc-b", "c1", signal=Signal.LISTING_VIEW, at=T0, now=T0)
    assert store.locations() == ["loc-a", "loc-b"]


def populate(store: LeadStore, n: int, seed: int) -> dict[str, list[Event]]:
    rng = random.Random(seed)
    leads = {f"lead-{i:04d}": random_events(rng) for i in range(n)}
    for contact_id, events in leads.items():
        record_all(store, contact_id, events or [(Signal.WEBSITE_VISIT, T0 - 20 * DAY)])
    return leads


def brute_force_top(store: LeadStore, contact_ids: list[str], min_likelihood: float, now: float) -> list[float]:
    states = store.load_many(LOC, contact_ids)
    scores = [likelihood(state, now) for state in states.values()]
    return sorted((s for s in scores if s >= min_likelihood), reverse=True)


@pytest.mark.parametrize(("min_likelihood", "limit"), [(0.0, 10), (30.0, 25), (50.0, 500)])
def test_high_intent_returns_exactly_the_top_k_of_a_brute_force_scan(
    store: LeadStore, min_likelihood: float, limit: int
) -> None:
    # Given 150 leads with random activity, indexed at T0
    leads = populate(store, 150, seed=int(min_likelihood))
    # When the high-intent list is read six hours later
    now = T0 + 6 * HOUR
    found = store.high_intent(LOC, min_likelihood, limit, now=now)
    # Then its scores are the brute force's top k, highest first, each the lead's true score now
    expected = brute_force_top(store, list(leads), min_likelihood, now)[:limit]
    states = store.load_many(LOC, [cid for cid, _, _ in found])
    assert [score for _, _, score in found] == expected
    assert all(likelihood(states[cid], now) == score for cid, _, score in found)


def test_high_intent_stops_scanning_once_the_top_k_is_certain(
    store: LeadStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given 300 indexed leads read in pages of 10
    populate(store, 300, seed=7)
    monkeypatch.setattr(lead_state, "CANDIDATE_PAGE", 10)
    loaded: list[str] = []
    load_many = store.load_many

    def counting(location_id: str, contact_ids: Any) -> dict[str, LeadState]:
        ids = list(contact_ids)
        loaded.extend(ids)
        return load_many(location_id, ids)

    monkeypatch.setattr(store, "load_many", counting)
    # When the top 5 are asked for an hour later
    store.high_intent(LOC, 0.0, 5, now=T0 + HOUR)
    # Then only a few pages were read, not all 300 leads
    assert len(loaded) <= 30


def test_high_intent_tightens_the_index_to_the_scores_now(store: LeadStore, redis_url: str) -> None:
    record_all(store, "c1", [(Signal.PRICING_TOOL_USAGE, T0 - HOUR)])
    later = T0 + 3 * DAY
    [(_, state, score)] = store.high_intent(LOC, 0.0, 10, now=later)
    assert raw_redis(redis_url).zscore(index_key(LOC), "c1") == score == likelihood(state, later)


def test_high_intent_drops_index_entries_of_leads_that_are_gone(store: LeadStore, redis_url: str) -> None:
    raw = raw_redis(redis_url)
    raw.zadd(index_key(LOC), {"ghost": 90.0})
    store.high_intent(LOC, 50.0, 10, now=T0)
    assert raw.zscore(index_key(LOC), "ghost") is None


# Erasure


def test_erase_forgets_the_lead_and_everything_kept_about_it(store: LeadStore, redis_url: str) -> None:
    # Given a lead with state, history and send records
    record_all(store, "c1", [(Signal.LISTING_VIEW, T0 - HOUR)])
    raw = raw_redis(redis_url, decode_responses=True)
    prefix = lead_prefix(LOC, "c1")
    raw.rpush(prefix + ":messages", "{}")
    raw.set(prefix + ":sends", 1)
    raw.set(prefix + ":pending", 1)
    # When it is erased
    store.erase(LOC, "c1")
    # Then nothing about it is left, in its keys or in the index
    assert (raw.keys(prefix + "*"), raw.zscore(index_key(LOC), "c1"), store.load(LOC, "c1")) == ([], None, None)


def test_erase_leaves_other_leads_alone(store: LeadStore) -> None:
    record_all(store, "c1", [(Signal.LISTING_VIEW, T0 - HOUR)])
    record_all(store, "c2", [(Signal.LISTING_VIEW, T0 - HOUR)])
    store.erase(LOC, "c1")
    assert store.load(LOC, "c2") is not None


# Cluster mode (ElastiCache Serverless runs in cluster mode)


@pytest.fixture
def cluster_store(cluster_url: str) -> Iterator[LeadStore]:
    """A lead store on the tests' own 6-node cluster (3 masters, 3 replicas), emptied."""
    yield LeadStore()
    cache().close()


CLUSTER_LEADS = [f"lead-{i}" for i in range(12)]


def test_cluster_leads_fall_in_different_slots() -> None:
    assert len({key_slot(lead_key(LOC, cid).encode()) for cid in CLUSTER_LEADS}) == len(CLUSTER_LEADS)


def test_cluster_record_and_load_agree_with_python(cluster_store: LeadStore) -> None:
    events = random_events(random.Random(1), most=20)
    events.append((Signal.PRICING_TOOL_USAGE, T0 - HOUR))
    record_all(cluster_store, "lead-0", events)
    stored = cluster_store.load(LOC, "lead-0")
    assert stored is not None
    assert_same_counters(stored, python_state(events))


def test_cluster_record_without_an_event_id_works(cluster_store: LeadStore) -> None:
    assert not cluster_store.record(LOC, "lead-0", signal=Signal.LISTING_VIEW, at=T0, now=T0).duplicate


def test_cluster_record_de_duplicates_by_event_id(cluster_store: LeadStore) -> None:
    cluster_store.record(LOC, "lead-0", signal=Signal.LISTING_VIEW, at=T0, event_id="e1", now=T0)
    assert cluster_store.record(LOC, "lead-0", signal=Signal.LISTING_VIEW, at=T0, event_id="e1", now=T0).duplicate


def test_cluster_load_many_reads_leads_across_slots(cluster_store: LeadStore) -> None:
    for i, cid in enumerate(CLUSTER_LEADS):
        record_all(cluster_store, cid, [(Signal.LISTING_VIEW, T0 - k * HOUR) for k in range(i + 1)])
    states = cluster_store.load_many(LOC, [*CLUSTER_LEADS, "nobody"])
    assert {cid: s.signals[Signal.LISTING_VIEW].count for cid, s in states.items()} == {
        cid: i + 1 for i, cid in enumerate(CLUSTER_LEADS)
    }


def test_cluster_high_intent_returns_the_top_k(cluster_store: LeadStore) -> None:
    rng = random.Random(3)
    for cid in CLUSTER_LEADS:
        record_all(cluster_store, cid, random_events(rng, most=25, days=3) or [(Signal.LISTING_VIEW, T0)])
    now = T0 + HOUR
    found = cluster_store.high_intent(LOC, 0.0, 5, now=now)
    assert [score for _, _, score in found] == brute_force_top(cluster_store, CLUSTER_LEADS, 0.0, now)[:5]


def test_cluster_get_many_reads_keys_across_slots(cluster_store: LeadStore) -> None:
    values = {f"lf:{{{cid}}}:note": {"lead": cid} for cid in CLUSTER_LEADS}
    cluster_store.cache.set_many(values)
    assert cluster_store.cache.get_many([*values, "lf:{nobody}:note"]) == values


def test_a_server_that_lost_its_scripts_records_each_event_once(store: LeadStore, redis_url: str) -> None:
    """A replica just promoted (or a restarted server) answers NOSCRIPT without running anything:
    the script is loaded again and only those calls are sent again."""
    store.record(LOC, "c1", signal=Signal.LISTING_VIEW, at=T0, event_id="evt-1", now=T0)
    raw_redis(redis_url).script_flush()
    events = [
        Recording(LOC, "c1", Signal.LISTING_VIEW, T0, "evt-2"),
        Recording(LOC, "c2", Signal.LISTING_VIEW, T0, "evt-1"),
    ]
    recorded = store.record_many(events, now=T0)
    assert [r.duplicate for r in recorded] == [False, False]
    assert recorded[0].state.signals[Signal.LISTING_VIEW].count == 2
    assert recorded[1].state.signals[Signal.LISTING_VIEW].count == 1
