"""The circuit breaker on a fake clock: closed, open after repeated failures, half-open trial, closed."""

from __future__ import annotations

import pytest
from redis.exceptions import ResponseError

from leadflow.redis_client import Cache, CircuitBreaker


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def breaker(clock: FakeClock) -> CircuitBreaker:
    return CircuitBreaker(threshold=3, cooldown=5.0, clock=clock)


def fail(breaker: CircuitBreaker, times: int) -> None:
    for _ in range(times):
        breaker.failure()


def test_a_new_breaker_lets_calls_through(breaker: CircuitBreaker) -> None:
    assert (breaker.allow(), breaker.is_open) == (True, False)


def test_failures_below_the_threshold_keep_it_closed(breaker: CircuitBreaker) -> None:
    fail(breaker, 2)
    assert (breaker.allow(), breaker.is_open) == (True, False)


def test_threshold_consecutive_failures_open_it(breaker: CircuitBreaker) -> None:
    fail(breaker, 3)
    assert (breaker.allow(), breaker.is_open) == (False, True)


def test_a_success_resets_the_failure_count(breaker: CircuitBreaker) -> None:
    fail(breaker, 2)
    breaker.success()
    fail(breaker, 2)
    assert breaker.allow()


def test_an_open_breaker_refuses_calls_until_the_cooldown_ends(breaker: CircuitBreaker, clock: FakeClock) -> None:
    fail(breaker, 3)
    clock.advance(4.99)
    assert not breaker.allow()


def test_after_the_cooldown_one_trial_call_is_let_through(breaker: CircuitBreaker, clock: FakeClock) -> None:
    fail(breaker, 3)
    clock.advance(5.0)
    assert [breaker.allow(), breaker.allow(), breaker.allow()] == [True, False, False]


def test_a_successful_trial_closes_it(breaker: CircuitBreaker, clock: FakeClock) -> None:
    fail(breaker, 3)
    clock.advance(5.0)
    breaker.allow()
    breaker.success()
    assert (breaker.is_open, breaker.allow(), breaker.allow()) == (False, True, True)


def test_a_failed_trial_reopens_it_for_a_full_cooldown(breaker: CircuitBreaker, clock: FakeClock) -> None:
    # Given an open breaker whose trial call fails
    fail(breaker, 3)
    clock.advance(5.0)
    breaker.allow()
    breaker.failure()
    # Then it refuses calls for another cooldown, counted from the failed trial
    clock.advance(4.0)
    refused = not breaker.allow()
    clock.advance(1.0)
    assert (refused, breaker.allow()) == (True, True)


def test_after_closing_it_takes_threshold_failures_again_to_open(breaker: CircuitBreaker, clock: FakeClock) -> None:
    fail(breaker, 3)
    clock.advance(5.0)
    breaker.allow()
    breaker.success()
    fail(breaker, 2)
    assert breaker.allow()


def test_a_trial_call_answered_with_a_server_error_closes_the_breaker(clock: FakeClock) -> None:
    # Given a client whose breaker is open and whose cool-down has passed
    client = Cache("redis://127.0.0.1:1/0", breaker=CircuitBreaker(threshold=1, cooldown=5.0, clock=clock))
    client.breaker.failure()
    clock.advance(5.0)

    # When the trial call reaches Redis and Redis answers with an error (WRONGTYPE, NOSCRIPT, ...)
    def answered_with_error(_: object) -> None:
        raise ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value")

    with pytest.raises(ResponseError):
        client.run(answered_with_error)
    # Then Redis is reachable: the breaker is closed and lets the next call through
    assert (client.breaker.is_open, client.breaker.allow()) == (False, True)


def test_a_trial_call_that_fails_outside_redis_lets_the_next_call_try(clock: FakeClock) -> None:
    client = Cache("redis://127.0.0.1:1/0", breaker=CircuitBreaker(threshold=1, cooldown=5.0, clock=clock))
    client.breaker.failure()
    clock.advance(5.0)

    def broken(_: object) -> None:
        raise ValueError("a bug in the caller, not a Redis failure")

    with pytest.raises(ValueError, match="a bug in the caller"):
        client.run(broken)
    assert client.breaker.allow()
