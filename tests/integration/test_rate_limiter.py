"""GHL's rate limits per location, shared by every sender through Redis: never more than 100 requests
in any 10-second window (fewer when X-RateLimit-Max says so), nothing once the day's allowance is
spent, and GHL's own word on waiting never shortened.

Bursts run on a VirtualClock: worker threads share it, it moves only when all of them sleep, and the
GHL stand-in stamps each request's arrival with it, so the windows are checked both on the limiter's
own admitted times and on what GHL received, in well under a second."""

from __future__ import annotations

import queue
import random
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from leadflow.config import settings
from leadflow.ghl import DailyQuotaSpent, RateLimited, RateLimiter, send_message
from leadflow.ghl.limiter import WINDOW_MARGIN, WINDOW_MAX, WINDOW_SECONDS, Admission, next_reset
from tests.helpers import HOT, StubServer, VirtualClock, most_in_any_window, raw_redis, seed_lead
from tests.integration.test_send_function import NOON, deliver, history, job, messages_api

POST = "POST /conversations/messages"
WINDOW = WINDOW_SECONDS + WINDOW_MARGIN  # the limiter's own window: GHL's plus a margin for the trip


class Recording(RateLimiter):
    """A limiter that notes each admission's time (its own clock) in a list shared by all of them."""

    def __init__(self, clock: VirtualClock, admitted: list[float]) -> None:
        super().__init__(clock=clock)
        self.admitted = admitted

    def acquire(self, *args: Any, **kwargs: Any) -> Admission:
        admission = super().acquire(*args, **kwargs)
        self.admitted.append(admission.at)
        return admission


@pytest.fixture(autouse=True)
def _own_redis(redis_url: str) -> None:
    """Every test here on the tests' own redis-server (REDIS_URL), never a default one."""


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture
def ghl_api(redis_url: str, clock: VirtualClock, monkeypatch: pytest.MonkeyPatch) -> Iterator[StubServer]:
    """GHL's send route, stamping arrivals with the virtual clock."""
    server = StubServer({POST: [(200, {}, {"messageId": "m-1"})]}, clock=clock)
    monkeypatch.setenv("GHL_API_KEY", "pit-test-token")
    monkeypatch.setenv("GHL_API_BASE_URL", server.url)
    settings.cache_clear()
    yield server
    server.close()


def burst(clock: VirtualClock, sends: int, threads: int, admitted: list[float]) -> list[str]:
    """`sends` messages from `threads` concurrent senders, each with a limiter of its own (as separate
    functions have); a send the limiter gives back is delivered again 5 s later, as SQS would. Returns
    the contacts handed back at least once."""
    todo: queue.Queue[str] = queue.Queue()
    for i in range(sends):
        todo.put(f"c-{i}")
    handed_back: list[str] = []

    def sender(_: int) -> None:
        with clock.worker():
            while True:
                try:
                    contact = todo.get_nowait()
                except queue.Empty:
                    return
                while True:
                    try:
                        send_message(
                            "loc-1", contact, "sms", "hi", limiter=Recording(clock, admitted), sleep=clock.sleep
                        )
                        break
                    except RateLimited:
                        handed_back.append(contact)
                        clock.sleep(5.0)

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(sender, range(threads)))
    return handed_back


# The window, shared by every sender


def test_a_burst_of_150_sends_from_8_senders_never_puts_more_than_100_in_any_10_seconds(
    ghl_api: StubServer, clock: VirtualClock
) -> None:
    start, admitted = clock(), []
    handed_back = burst(clock, 150, 8, admitted)
    arrivals = [request["at"] for request in ghl_api.calls(POST)]
    # every message reached GHL once
    assert len(arrivals) == 150
    assert sorted({r["json"]["contactId"] for r in ghl_api.calls(POST)}) == sorted(f"c-{i}" for i in range(150))
    # no 10-second window, at the limiter or at GHL, ever held more than 100
    assert most_in_any_window(admitted, WINDOW_SECONDS) == WINDOW_MAX
    assert most_in_any_window(arrivals, WINDOW_SECONDS) == WINDOW_MAX
    assert most_in_any_window(arrivals, WINDOW - 1e-6) == WINDOW_MAX  # nor any window of the margin's length
    # the first 100 went at once; the rest when the first had left the window
    assert sorted(arrivals)[:100] == [start] * 100
    assert min(sorted(arrivals)[100:]) == pytest.approx(start + WINDOW)
    # and sends that would have waited past their budget went back to the queue instead of waiting
    assert handed_back


def test_the_window_slides_instead_of_letting_a_second_burst_through() -> None:
    clock = VirtualClock()
    limiter = RateLimiter(clock=clock)
    start = clock()
    for _ in range(50):
        limiter.acquire("loc-1", clock.sleep)
    clock.sleep(9.0)
    for _ in range(50):
        limiter.acquire("loc-1", clock.sleep)
    # a bucket refilled for 9 s would let more through now; the window waits for the first 50 to leave
    limiter.acquire("loc-1", clock.sleep, deadline=clock() + 10)
    assert clock() == pytest.approx(start + WINDOW)
    for _ in range(49):  # 49 more fit before the second 50 leave; the 50th does not
        limiter.acquire("loc-1", clock.sleep)
    with pytest.raises(RateLimited):
        limiter.acquire("loc-1", clock.sleep)


def test_a_random_stream_is_admitted_exactly_when_the_window_has_room() -> None:
    clock, rng = VirtualClock(), random.Random(7)
    limiter = RateLimiter(clock=clock)
    admitted: list[float] = []
    for _ in range(1500):
        clock.sleep(rng.expovariate(1 / 0.05))  # about 20 a second: twice what the window allows
        now = clock()
        room = sum(1 for t in admitted if t > now - WINDOW) < WINDOW_MAX
        try:
            limiter.acquire("loc-1", clock.sleep, deadline=now)  # no waiting: admitted now or refused
            admitted.append(now)
            assert room
        except RateLimited:
            assert not room
    assert most_in_any_window(admitted, WINDOW_SECONDS) == WINDOW_MAX
    assert len(admitted) > 600


def test_senders_share_one_window_per_location_and_each_location_has_its_own(redis_url: str) -> None:
    clock = VirtualClock()
    first, second = RateLimiter(clock=clock), RateLimiter(clock=clock)
    for i in range(WINDOW_MAX):
        (first if i % 2 else second).acquire("loc-1")
    with pytest.raises(RateLimited):
        first.acquire("loc-1")
    second.acquire("loc-2")
    second.acquire("{loc-1}:x")  # an id with hash-tag characters is a location of its own
    raw = raw_redis(redis_url)
    assert raw.zcard("lf:{loc-1}:ghl-window") == WINDOW_MAX
    assert raw.zcard("lf:{loc-2}:ghl-window") == 1


def test_a_wait_past_the_budget_gives_the_send_back_at_once(ghl_api: StubServer, clock: VirtualClock) -> None:
    limiter = RateLimiter(clock=clock)
    limiter.block("loc-1", 30.0)
    before = clock()
    with pytest.raises(RateLimited):
        send_message("loc-1", "c-1", "sms", "hi", limiter=limiter, sleep=clock.sleep)
    assert clock() == before  # it did not sit out a wait it could not finish
    assert ghl_api.calls(POST) == []


# What GHL says: X-RateLimit-Max, Retry-After, X-RateLimit-Daily-Remaining


def test_x_ratelimit_max_25_lowers_the_window_for_every_sender(
    ghl_api: StubServer, clock: VirtualClock, redis_url: str
) -> None:
    trial = {"X-RateLimit-Max": "25", "X-RateLimit-Interval-Milliseconds": "10000"}
    ghl_api.replies[POST] = [(200, trial, {"messageId": "m-1"})]
    admitted: list[float] = []
    send_message("loc-1", "c-first", "sms", "hi", limiter=Recording(clock, admitted), sleep=clock.sleep)
    assert raw_redis(redis_url).hget("lf:{loc-1}:ghl-limits", "max") == b"25"
    burst(clock, 60, 6, admitted)
    arrivals = [request["at"] for request in ghl_api.calls(POST)]
    assert len(arrivals) == 61
    assert most_in_any_window(arrivals, WINDOW_SECONDS) == 25
    assert most_in_any_window(admitted, WINDOW_SECONDS) == 25


def test_a_429_without_retry_after_never_cuts_a_longer_wait_short(ghl_api: StubServer, clock: VirtualClock) -> None:
    limiter = RateLimiter(clock=clock)
    # Given a send whose request meets a 429 without Retry-After, while another sender's 429 said 8 s
    ghl_api.replies[POST] = [(429, {}, {"message": "Too many requests"}), (200, {}, {"messageId": "m-2"})]
    ghl_api.on_request = lambda request: limiter.heard("loc-1", 429, {"Retry-After": "8"})
    # When it tries again
    assert send_message("loc-1", "c-1", "sms", "hi", limiter=limiter, sleep=clock.sleep) == ("m-2",)
    # Then it waited the 8 s, not its own default second
    first, second = (request["at"] for request in ghl_api.calls(POST))
    assert second - first == pytest.approx(8.0)


def test_a_shorter_wait_heard_later_leaves_the_longer_one_in_place() -> None:
    clock = VirtualClock()
    limiter = RateLimiter(clock=clock)
    start = clock()
    limiter.heard("loc-1", 429, {"Retry-After": "8"})
    limiter.heard("loc-1", 429, {})  # no Retry-After: a second by default
    limiter.heard("loc-1", 429, {"Retry-After": "2"})
    limiter.acquire("loc-1", clock.sleep, deadline=start + 10)
    assert clock() - start == pytest.approx(8.0)


@pytest.mark.parametrize(
    ("retry_after", "seconds"), [("5", 5.0), ("date", 5.0), ("inf", 1.0), ("soon", 1.0), ("-3", 0.0)]
)
def test_retry_after_in_seconds_or_as_a_date_and_nonsense_as_a_second(retry_after: str, seconds: float) -> None:
    from email.utils import formatdate

    clock = VirtualClock(start=1_800_000_000.0)
    limiter = RateLimiter(clock=clock)
    value = formatdate(clock() + 5, usegmt=True) if retry_after == "date" else retry_after
    assert limiter.heard("loc-1", 429, {"Retry-After": value}).wait == seconds


def test_daily_remaining_0_stops_every_call_for_the_location_until_the_day_turns(
    ghl_api: StubServer, clock: VirtualClock, redis_url: str
) -> None:
    from leadflow.intake.contacts import lead_timezone

    spent = {"X-RateLimit-Daily-Remaining": "0", "X-RateLimit-Limit-Daily": "200000"}
    ghl_api.replies[POST] = [(200, spent, {"messageId": "m-last"}), (200, {}, {"messageId": "m-next"})]
    limiter = RateLimiter(clock=clock)
    # The request that spent the allowance went through
    assert send_message("loc-1", "c-1", "sms", "hi", limiter=limiter, sleep=clock.sleep) == ("m-last",)
    # Then nothing more goes to GHL for the location: sends, and lookups too
    with pytest.raises(DailyQuotaSpent) as caught:
        send_message("loc-1", "c-2", "sms", "hi", limiter=limiter, sleep=clock.sleep)
    assert caught.value.until == next_reset(clock()) > clock()
    ghl_api.replies["GET /contacts/c-2"] = [(200, {}, {"contact": {"id": "c-2", "timezone": "America/Denver"}})]
    assert lead_timezone("c-2", "loc-1", settings()) is None
    assert [r["key"] for r in ghl_api.requests] == [POST]
    # Another location is not affected, and the key holding it ends by itself
    send_message("loc-2", "c-3", "sms", "hi", limiter=limiter, sleep=clock.sleep)
    assert raw_redis(redis_url).pttl("lf:{loc-1}:ghl-quota") > 0
    # When the day turns, the location sends again
    clock.sleep(caught.value.until - clock())
    assert send_message("loc-1", "c-2", "sms", "hi", limiter=limiter, sleep=clock.sleep) == ("m-next",)


def test_a_spent_day_skips_follow_ups_and_answers_on_demand_sends_409_rate_limited(
    send: Any, ghl: StubServer, lambda_context: Any
) -> None:
    from leadflow.followup_store import FollowupStore
    from leadflow.lead_state import LeadStore, encode_profile

    ghl.replies[POST] = [(200, {"X-RateLimit-Daily-Remaining": "0"}, {"messageId": "m-1"})]
    seed_lead("hot-1", HOT, profile=NOON)
    seed_lead("hot-2", HOT, profile=NOON)
    # The send that spent the day is sent; the next job is skipped, not retried, with its place given back
    assert deliver(send, lambda_context, job()) == {"batchItemFailures": []}
    assert deliver(send, lambda_context, job("hot-2", "job-2")) == {"batchItemFailures": []}
    assert len(ghl.calls(POST)) == 1
    assert [(e["status"], e.get("reason")) for e in history("hot-2")] == [("skipped", "rate_limited")]
    assert FollowupStore().followups("loc-1", {"hot-2": 0.0}, time.time())["hot-2"].counts.today == 0
    # An on-demand send is refused with the reason, which comes last in the contract's order
    status, reply = messages_api(send, lambda_context, "POST", "hot-2")
    assert (status, reply["reason"]) == (409, "rate_limited")
    LeadStore().record("loc-1", "hot-2", fields=encode_profile({"opted_out": True}))
    assert messages_api(send, lambda_context, "POST", "hot-2")[1]["reason"] == "opted_out"


# Every call of a location shares it: lookups too


def test_contact_and_location_lookups_take_their_place_in_the_window(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from leadflow.intake import contacts

    server = StubServer(
        {
            "GET /contacts/c-1": [(200, {}, {"contact": {"id": "c-1"}})],
            "GET /locations/loc-1": [(200, {}, {"location": {"id": "loc-1", "timezone": "America/Phoenix"}})],
        }
    )
    monkeypatch.setenv("GHL_API_KEY", "pit-test-token")
    monkeypatch.setenv("GHL_API_BASE_URL", server.url)
    settings.cache_clear()
    raw = raw_redis(redis_url)
    try:
        assert contacts.lead_timezone("c-1", "loc-1", settings()) == "America/Phoenix"
        assert raw.zcard("lf:{loc-1}:ghl-window") == 2  # the contact, then its location
        # With the window full, a lookup does not wait its turn (the webhook must answer): it is skipped
        limiter = RateLimiter()
        for _ in range(WINDOW_MAX - 2):
            limiter.acquire("loc-1")
        contacts._location_zones.clear()
        assert contacts.lead_timezone("c-1", "loc-1", settings()) is None
        assert len(server.requests) == 2
    finally:
        server.close()


# Cluster mode (ElastiCache Serverless): each script touches one slot


def test_the_limiter_works_on_a_cluster(cluster_url: str) -> None:
    from leadflow import redis_client

    try:
        clock = VirtualClock()
        limiter = RateLimiter(clock=clock)
        assert redis_client.cache().cluster
        for location in ("loc-1", "loc:{2}", "%7B"):
            limiter.heard(location, 200, {"X-RateLimit-Max": "25", "X-RateLimit-Remaining": "24"})
            for _ in range(25):
                limiter.acquire(location)
            with pytest.raises(RateLimited):
                limiter.acquire(location)
        limiter.heard("loc-1", 200, {"X-RateLimit-Daily-Remaining": "0"})
        assert limiter.quota_until("loc-1") == next_reset(clock())
        with pytest.raises(DailyQuotaSpent):
            limiter.acquire("loc-1", deadline=clock() + 100)
    finally:
        redis_client.cache().close()
