"""Planning a fanned-out monitor run: which shard does which candidates."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from leadflow.errors import InvalidInput
from leadflow.monitor_shards import Part, Shard, plan, run_id


def covered(shards: list[tuple[Part, ...]], counts: dict[str, int]) -> dict[str, list[int]]:
    """Location -> every rank some shard reads (a whole part reads all of its location's)."""
    ranks: dict[str, list[int]] = {loc: [] for loc in counts}
    for shard in shards:
        for part in shard:
            stop = counts[part.location_id] if part.stop is None else part.stop
            ranks[part.location_id] += range(part.start, stop)
    return ranks


def size(shard: tuple[Part, ...], counts: dict[str, int]) -> int:
    return sum((counts[p.location_id] if p.stop is None else p.stop) - p.start for p in shard)


def test_small_locations_are_packed_in_name_order_and_a_big_one_is_split_in_equal_ranges() -> None:
    counts = {"b": 2, "a": 7, "c": 1, "d": 3}

    assert plan(counts, 3) == [
        (Part("a", 0, 3, 0, 3),),
        (Part("a", 3, 6, 1, 3),),
        (Part("a", 6, None, 2, 3),),
        (Part("b"), Part("c")),
        (Part("d"),),
    ]


@pytest.mark.parametrize("seed", range(20))
def test_every_candidate_is_in_exactly_one_shard_and_no_shard_is_over_the_limit(seed: int) -> None:
    rng = random.Random(seed)
    counts = {f"loc-{i:03d}": rng.choice([0, 1, 5, 40, 99, 100, 101, 250, 1000]) for i in range(rng.randint(1, 60))}
    limit = rng.choice([1, 7, 100, 333])

    shards = plan(counts, limit)

    for location_id, ranks in covered(shards, counts).items():
        assert sorted(ranks) == list(range(counts[location_id])), location_id
    assert all(size(shard, counts) <= limit for shard in shards)
    # a location appears in one shard, unless it is split; a split location's pieces are shards of their own
    whole = [p.location_id for shard in shards for p in shard if not p.split]
    assert len(whole) == len(set(whole))
    assert all(len(shard) == 1 for shard in shards if any(p.split for p in shard))
    # the split locations' pieces, plus a next-fit packing of the rest (at most twice the fewest bins)
    pieces = sum(-(-n // limit) for n in counts.values() if n > limit)
    rest = sum(n for n in counts.values() if n <= limit)
    assert len(shards) <= pieces + max(1, 2 * -(-rest // limit))


def test_a_shard_survives_its_message() -> None:
    shard = Shard("20261125T170500Z", 3, 9, (Part("loc:1"), Part("a", 10, None, 1, 2), Part("b", 0, 5, 0, 2)))

    assert Shard.from_json(shard.to_json()) == shard
    with pytest.raises(InvalidInput):
        Shard.from_json('{"run": "x", "shard": 0}')


def test_the_run_id_is_the_scheduled_time_or_else_now() -> None:
    now = datetime(2026, 11, 25, 17, 6, 12, tzinfo=UTC)

    assert run_id("2026-11-25T17:05:00Z", now) == "20261125T170500Z"
    assert run_id("2026-11-25T12:05:00-05:00", now) == "20261125T170500Z"
    assert run_id(None, now) == "20261125T170612Z"
    with pytest.raises(InvalidInput):
        run_id("yesterday", now)
