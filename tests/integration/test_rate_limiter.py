"""GHL's limit (100 requests per 10 seconds per location), shared by every sender through Redis."""

from __future__ import annotations

import pytest

from leadflow.ghl import BUCKET_CAPACITY, RateLimiter, TransientFailure


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_a_full_bucket_lets_100_requests_through_then_waits_for_a_token(redis_url: str) -> None:
    clock = Clock()
    limiter = RateLimiter(clock=clock)
    for _ in range(BUCKET_CAPACITY):
        limiter.acquire("loc-1", clock.sleep)
    assert clock.slept == []
    limiter.acquire("loc-1", clock.sleep)
    assert clock.slept == [pytest.approx(0.1)]  # 100 per 10 s: one token every 0.1 s


def test_two_senders_share_one_bucket_per_location(redis_url: str) -> None:
    clock = Clock()
    first, second = RateLimiter(clock=clock), RateLimiter(clock=clock)
    for i in range(BUCKET_CAPACITY):
        (first if i % 2 else second).acquire("loc-1", clock.sleep)
    second.acquire("loc-2", clock.sleep)  # another location has its own allowance
    assert clock.slept == []
    first.acquire("loc-1", clock.sleep)
    assert len(clock.slept) == 1


def test_a_drained_bucket_makes_senders_wait_or_give_the_job_back(redis_url: str) -> None:
    clock = Clock()
    limiter = RateLimiter(clock=clock)
    limiter.drain("loc-1", 3.0)  # GHL said: nothing left for 3 s
    limiter.acquire("loc-1", clock.sleep)
    assert sum(clock.slept) == pytest.approx(3.1)
    limiter.drain("loc-1", 60.0)
    with pytest.raises(TransientFailure):  # longer than a sender waits: SQS retries the job later
        limiter.acquire("loc-1", clock.sleep)
