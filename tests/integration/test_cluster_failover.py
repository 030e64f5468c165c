"""A Redis cluster failover under load: the master serving the leads' slots (and the location's score
index) is SIGKILLed while signed webhooks stream in and the send function works through its jobs.
Its replica takes over; nothing accepted is lost or counted twice, no job is sent twice or to a lead
who said STOP, and the circuit breaker opens while the master is gone and closes once a trial call
finds the promoted replica.

The cluster is this module's own (3 masters, 3 replicas): the test kills one of its masters."""

from __future__ import annotations

import json
import os
import secrets
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError
from redis.crc import key_slot

from leadflow.errors import StoreUnavailable
from leadflow.lead_state import lead_key
from leadflow.signals import Signal
from tests.conftest import Queues, _clear_caches
from tests.helpers import (
    HOT,
    LambdaContext,
    RedisClusterServers,
    StubServer,
    free_port,
    load_app,
    seed_lead,
    sqs_event,
)
from tests.integration.test_send_function import NOON, job
from tests.integration.test_webhook_support import (
    activity_event,
    clear_intake_caches,
    ed25519_private,
    ghl_body,
    ghl_event,
    intake_fixture,  # noqa: F401  (the `intake` fixture)
    public_pem,
    signing_secret,
)

LOC = "loc-1"
POST = "POST /conversations/messages"
PACE = 0.02  # seconds between two deliveries of the webhook stream
RESEND_EVERY = 7  # every 7th delivery, a sender's retry of an earlier one (same id, same body)
REDELIVER_EVERY = 1.5  # seconds between SQS deliveries of a failed job (five receives fit the outage)


@pytest.fixture(scope="module")
def own_cluster() -> Iterator[RedisClusterServers]:
    cluster = RedisClusterServers()
    cluster.start()
    yield cluster
    cluster.stop()


def live_replica(cluster: RedisClusterServers, master: int) -> int | None:
    try:
        return cluster.replica_of(master)
    except StopIteration:  # its replica was promoted when it died, or died itself
        return None


def leads_on(cluster: RedisClusterServers, master: int, prefix: str, n: int) -> list[str]:
    """`n` contact ids whose keys the master on port `master` serves."""
    found, i = [], 0
    while len(found) < n:
        contact = f"{prefix}-{i}"
        if cluster.owner(key_slot(lead_key(LOC, contact).encode())) == master:
            found.append(contact)
        i += 1
    return found


@dataclass
class Webhook:
    key: str  # the event's id: its webhook-id or webhookId
    lead: str
    signal: Signal
    event: dict[str, Any]
    at: float = 0.0
    status: int = 0
    outcome: str = ""


@dataclass
class Run:
    """What the threads saw, in the test's time (seconds since `start`)."""

    start: float = field(default_factory=time.monotonic)
    deliveries: list[Webhook] = field(default_factory=list)
    breaker: list[tuple[float, bool]] = field(default_factory=list)  # (at, open) after each delivery
    errors: list[str] = field(default_factory=list)

    def now(self) -> float:
        return time.monotonic() - self.start


@dataclass
class Stack:
    cluster: RedisClusterServers
    victim: int  # the master to kill: it serves the location's keys, and the test picks leads on it
    queues: Queues
    ghl: StubServer
    webhook: Any
    send: Any
    context: LambdaContext


@pytest.fixture
def stack(own_cluster: RedisClusterServers, queues: Queues, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    """The webhook and send functions on the cluster (REDIS_CLUSTER=true), moto SQS, a GHL stand-in."""
    ghl = StubServer({POST: [(200, {}, {"messageId": "m-1", "conversationId": "c-1"})]})
    own_cluster.flushall()
    victim = own_cluster.owner(key_slot(LOC.encode()))  # lf:{loc-1}:scores, :stats, :ghl-window...
    survivor = next(port for port in own_cluster.masters() if port != victim)
    env = {
        "REDIS_URL": f"redis://127.0.0.1:{survivor}/0",  # a new client finds the cluster through it
        "REDIS_CLUSTER": "true",
        "GHL_WEBHOOK_PUBLIC_KEY": public_pem(ed25519_private()),
        "WEBHOOK_SIGNING_SECRET": signing_secret(),
        "GHL_API_KEY": "pit-test-token",
        "GHL_API_BASE_URL": ghl.url,
        "SEND_MODE": "live",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    _clear_caches()
    clear_intake_caches()
    try:
        yield Stack(own_cluster, victim, queues, ghl, load_app("webhook"), load_app("send"), LambdaContext())
    finally:
        ghl.close()
        clear_intake_caches()


def activity(lead: str) -> Webhook:
    key = "msg_" + secrets.token_hex(8)
    payload = {"type": "activity", "location_id": LOC, "contact_id": lead, "signal": "listing_view"}
    return Webhook(key, lead, Signal.LISTING_VIEW, activity_event(payload, key))


def reply(lead: str, text: str = "Is it still available?") -> Webhook:
    key = secrets.token_hex(12)
    body = ghl_body("inbound_message_sms", locationId=LOC, contactId=lead, webhookId=key, body=text)
    return Webhook(key, lead, Signal.SMS_RESPONSE, ghl_event(body))


def deliver_webhook(run: Run, delivery: Webhook) -> Webhook:
    from leadflow import intake
    from leadflow.redis_client import cache

    answered = intake.handle_request(delivery.event)
    sent = Webhook(delivery.key, delivery.lead, delivery.signal, delivery.event, run.now(), answered.status)
    sent.outcome = answered.body["status"] if isinstance(answered.body, dict) else ""
    run.deliveries.append(sent)
    run.breaker.append((run.now(), cache().breaker.is_open))
    return sent


def stream(run: Run, stop: threading.Event, browsing: list[str], replying: list[str]) -> None:
    """Signed webhooks, one every PACE seconds: website activity for `browsing` leads, SMS replies
    (GHL InboundMessage) for `replying` ones, and now and then a sender's retry of an earlier one."""
    i = 0
    try:
        while not stop.is_set():
            if i % RESEND_EVERY == RESEND_EVERY - 1:
                earlier = run.deliveries[-5]
                deliver_webhook(run, Webhook(earlier.key, earlier.lead, earlier.signal, earlier.event))
            elif i % 4 == 3:
                deliver_webhook(run, reply(replying[i % len(replying)]))
            else:
                deliver_webhook(run, activity(browsing[i % len(browsing)]))
            i += 1
            time.sleep(PACE)
    except Exception as exc:  # the assertion on run.errors says what went wrong
        run.errors.append(f"stream: {exc!r}")


def probe(run: Run, stop: threading.Event, url: str, key: str, seen: list[tuple[float, str]]) -> None:
    """Another process's client (its own breaker), writing a key a surviving master serves: what a
    failover looks like from the rest of the cluster (CLUSTERDOWN until the replica takes over)."""
    from leadflow.redis_client import Cache

    client = Cache(url, cluster=True)
    try:
        while not stop.is_set():
            try:
                client.run(lambda r: r.incr(key))
                seen.append((run.now(), "ok"))
            except StoreUnavailable as exc:
                seen.append((run.now(), type(exc.__cause__).__name__ if exc.__cause__ else "circuit open"))
            except Exception as exc:  # anything else escaped the client: the assertion shows it
                seen.append((run.now(), f"raw {type(exc).__name__}"))
            time.sleep(PACE)
    finally:
        client.close()


def run_jobs(stack: Stack, run: Run, bodies: list[str], deadline: float) -> dict[str, int]:
    """SQS's part: deliver the jobs, and again every REDELIVER_EVERY seconds those the function
    reported failed (the receive count going up), until none fails or `deadline`. Returns each
    job's receive count."""
    receives = Counter[str]()
    waiting = {json.loads(body)["job_id"]: body for body in bodies}
    while waiting and run.now() < deadline:
        batch = list(waiting.values())
        for body in batch:
            receives[json.loads(body)["job_id"]] += 1
        event = sqs_event(batch, receive_count=max(receives.values()))
        try:
            failed = stack.send.lambda_handler(event, stack.context)["batchItemFailures"]
            failed_ids = {item["itemIdentifier"] for item in failed}
        except BatchProcessingError:  # every record failed: Lambda hands the whole batch back
            failed_ids = {record["messageId"] for record in event["Records"]}
        waiting = {json.loads(r["body"])["job_id"]: r["body"] for r in event["Records"] if r["messageId"] in failed_ids}
        if waiting:
            time.sleep(REDELIVER_EVERY)
    return dict(receives)


def job_history(lead: str) -> list[dict[str, Any]]:
    from leadflow.followup_store import FollowupStore

    return FollowupStore().history(LOC, lead)


def replay_spilled(stack: Stack) -> tuple[list[Any], Counter[str]]:
    """The intake queue's part: every spilled delivery back to the webhook function, each message
    deleted once replayed (as Lambda does). Returns the spilled deliveries and what replays did."""
    from leadflow import intake
    from leadflow.intake.spill import Delivery

    messages = stack.queues.receive(stack.queues.intake)
    outcomes = Counter[str]()
    for message in messages:
        outcomes += intake.replay(message["Body"])
        stack.queues.client.delete_message(QueueUrl=stack.queues.intake, ReceiptHandle=message["ReceiptHandle"])
    return [Delivery.from_json(message["Body"]) for message in messages], outcomes


def test_a_master_killed_mid_stream_loses_nothing_doubles_nothing_and_sends_nothing_twice(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    from leadflow import jobs
    from leadflow.lead_state import LeadStore
    from leadflow.redis_client import cache

    cluster, victim = stack.cluster, stack.victim
    replica = cluster.replica_of(victim)
    browsing = leads_on(cluster, victim, "browser", 4)
    replying = leads_on(cluster, victim, "replier", 2)
    texted = leads_on(cluster, victim, "texted", 3)
    stopper = leads_on(cluster, victim, "stopper", 1)[0]
    for lead in [*texted, stopper]:
        seed_lead(lead, HOT, profile=NOON)
    run, wall_start = Run(), time.time()

    # Given every lead texted once, and a STOP recorded on the master before it dies
    first = run_jobs(stack, run, [job(lead, f"r1-{lead}") for lead in [*texted, stopper]], deadline=5)
    assert first == dict.fromkeys([f"r1-{lead}" for lead in [*texted, stopper]], 1)
    assert deliver_webhook(run, reply(stopper, "STOP")).outcome == "accepted"
    before_kill = len(stack.ghl.calls(POST))
    assert before_kill == 4

    # When webhooks stream in and the master serving all these leads is SIGKILLed mid-stream,
    # while the send function works through a second job for each lead
    stop = threading.Event()
    webhooks = threading.Thread(target=stream, args=(run, stop, browsing, replying))
    webhooks.start()
    elsewhere = next(f"{{{tag}}}:probe" for tag in "abcdefgh" if cluster.owner(key_slot(tag.encode())) != victim)
    probed: list[tuple[float, str]] = []
    prober = threading.Thread(target=probe, args=(run, stop, os.environ["REDIS_URL"], elsewhere, probed))
    prober.start()
    time.sleep(1.0)
    killed_at = run.now()
    cluster.kill(victim)
    second_jobs = [job(lead, f"r2-{lead}") for lead in [*texted, stopper]]
    receives: dict[str, int] = {}
    sender = threading.Thread(target=lambda: receives.update(run_jobs(stack, run, second_jobs, deadline=20)))
    sender.start()
    promoted = cluster.wait_for_failover(key_slot(LOC.encode()), victim)
    failover_seconds = run.now() - killed_at
    # ... and the stream goes on until the breaker has closed again, and a second more
    while run.now() < killed_at + 15 and (run.now() < killed_at + 3 or run.breaker[-1][1]):
        time.sleep(0.05)
    time.sleep(1.0)
    stop.set()
    for thread in (webhooks, sender, prober):
        thread.join(30)
        assert not thread.is_alive()
    assert run.errors == []
    queue_checked_at, queue_pending = jobs._replay_seen[stack.queues.intake]
    sent_during = len(stack.ghl.calls(POST)) - before_kill

    # Then the replica serves the slots
    assert promoted == replica

    # And the breaker opened while the master was gone, and closed after its cool-down, when a
    # trial call found the promoted replica
    opened = [at for at, is_open in run.breaker if is_open]
    assert opened
    assert killed_at < opened[0] < killed_at + failover_seconds
    closed = [at for at, is_open in run.breaker if at > opened[0] and not is_open]
    assert closed
    last_seen_closed = max(at for at, is_open in run.breaker if at < opened[0] and not is_open)
    assert closed[0] >= last_seen_closed + cache().breaker.cooldown  # it opened after that
    assert not cache().breaker.is_open
    # And elsewhere in the cluster the failover was CLUSTERDOWN until the replica took over: a
    # failure for the breaker (StoreUnavailable), never an error escaping the client
    outcomes = Counter(outcome for _, outcome in probed)
    assert outcomes["ClusterDownError"] >= 1, outcomes
    assert set(outcomes) <= {"ok", "ClusterDownError", "circuit open"}, outcomes
    assert probed[-1][1] == "ok"

    # And every delivery was answered 200: recorded, or spilled to the intake queue, and none was
    # spilled once the breaker had closed (it closed because Redis answered, not by itself)
    assert {d.status for d in run.deliveries} == {200}
    spilled, replayed = replay_spilled(stack)
    assert spilled
    assert max(delivery.received_at for delivery in spilled) < wall_start + closed[0]

    # And once replayed, every event is in Redis exactly once (retries and replays are duplicates)
    accepted = {d.key: d for d in run.deliveries if d.outcome == "accepted"}
    expected = Counter((d.lead, d.signal) for d in accepted.values())
    store = LeadStore()
    recorded = Counter[tuple[str, Signal]]()
    for lead, signal in expected:
        state = store.load(LOC, lead)
        recorded[(lead, signal)] = state.signals[signal].count if state and signal in state.signals else 0
    # (a STOP records no signal: the stopper's one reply is the STOP)
    del expected[(stopper, Signal.SMS_RESPONSE)], recorded[(stopper, Signal.SMS_RESPONSE)]
    assert recorded == expected

    # And no job was sent twice; the STOP held through the failover; the cap held
    _clear_caches()  # a new send instance: it has not looked at the intake queue in the last 10 s
    late = run_jobs(stack, run, [*second_jobs, *[job(lead, f"r3-{lead}") for lead in texted]], deadline=run.now() + 10)
    posts = stack.ghl.calls(POST)
    per_lead = Counter(p["json"]["contactId"] for p in posts)
    assert per_lead[stopper] == 1  # round 1 only
    assert all(per_lead[lead] <= 3 for lead in texted)  # MAX_DAILY_FOLLOWUPS_PER_LEAD
    for lead in [*texted, stopper]:
        ends = Counter(entry["job_id"] for entry in job_history(lead))
        assert all(n == 1 for n in ends.values()), (lead, ends)
    # (replay_pending: the job ran while spilled events waited and the instance knew it)
    assert [e["reason"] for e in job_history(stopper) if e["job_id"] == f"r2-{stopper}"] in (
        ["opted_out"],
        ["replay_pending"],
    )
    for lead in texted:  # round 2's job: sent at most once, round 3's: sent now that all is well
        statuses = {e["job_id"]: e["status"] for e in job_history(lead)}
        assert statuses[f"r3-{lead}"] == "sent", statuses
    assert len(posts) == before_kill + sum(
        1 for lead in texted for e in job_history(lead) if e["status"] == "sent" and e["job_id"] != f"r1-{lead}"
    )

    spilled_events = {key for key in accepted if any(key in delivery.dedupe_id for delivery in spilled)}
    with capsys.disabled():
        print(
            f"\nfailover: killed {victim} at {killed_at:.2f}s, {replica} serving after {failover_seconds:.2f}s; "
            f"breaker open {opened[0] - killed_at:.2f}s after the kill, closed again at {closed[0] - killed_at:.2f}s; "
            f"deliveries {len(run.deliveries)}, distinct events {len({d.key for d in run.deliveries})}, "
            f"accepted {len(accepted)}, duplicate {sum(d.outcome == 'duplicate' for d in run.deliveries)}, "
            f"spilled {len(spilled)} deliveries of {len(spilled_events)} events (replayed: {dict(replayed)}), "
            f"never spilled {len(accepted) - len(spilled_events)}, "
            f"in Redis after replay {sum(recorded.values())}; elsewhere in the cluster {dict(outcomes)}; "
            f"GHL messages during the failover {sent_during} (spilled events waiting; the send instance had "
            f"last read the intake queue {killed_at - (queue_checked_at - wall_start):.2f}s before the kill, "
            f"pending={queue_pending}), "
            f"in all {len(posts)}; receives of round 2 {receives}, afterwards {late}"
        )


def test_a_stop_spilled_while_redis_was_away_holds_the_next_send(
    intake: Any, ghl: StubServer, lambda_context: LambdaContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The send reads the intake queue right before it acts, never an "empty" answer of seconds ago
    (the failover test met it: a STOP spilled 0.31 s after the kill, a text 5.7 s later)."""
    from leadflow import config, redis_client
    from leadflow.intake import service

    def new_redis_clients() -> None:  # what a new Lambda instance has; the send instance keeps its memory
        config.settings.cache_clear()
        redis_client.cache.cache_clear()
        service._store_for.cache_clear()

    send = load_app("send")
    seed_lead("hot-1", HOT, profile=NOON)
    assert run_once(send, lambda_context, job("hot-1", "job-1")) == []  # sent; the intake queue read: empty
    # Given a webhook instance that cannot reach Redis takes the lead's STOP: spilled, 200
    reachable = os.environ["REDIS_URL"]
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    new_redis_clients()
    assert intake(ghl_event(ghl_body("inbound_message_sms", locationId=LOC, contactId="hot-1", body="STOP"))) == (
        200,
        {"status": "accepted"},
    )
    assert len(intake.spilled()) == 1
    # When the next job for the lead runs, Redis reachable again, the STOP still waiting for its replay
    monkeypatch.setenv("REDIS_URL", reachable)
    new_redis_clients()
    assert run_once(send, lambda_context, job("hot-1", "job-2")) == []
    # Then nothing more was sent
    assert len(ghl.calls(POST)) == 1


def run_once(send: Any, context: LambdaContext, body: str) -> list[Any]:
    return list(send.lambda_handler(sqs_event([body]), context)["batchItemFailures"])


def test_a_master_turned_replica_answers_moved_and_the_client_follows(
    own_cluster: RedisClusterServers, monkeypatch: pytest.MonkeyPatch
) -> None:
    from leadflow.lead_state import LeadStore
    from leadflow.redis_client import cache

    # Given a lead recorded through a client that knows the cluster as it is now
    cluster = own_cluster
    master, replica = next((port, replica) for port in cluster.masters() if (replica := live_replica(cluster, port)))
    [lead] = leads_on(cluster, master, "moved", 1)
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{replica}/0")
    monkeypatch.setenv("REDIS_CLUSTER", "true")
    _clear_caches()
    store = LeadStore()
    store.record(LOC, lead, signal=Signal.LISTING_VIEW, event_id="before")
    moved_before = int(cluster.node(master).info("errorstats").get("errorstat_MOVED", {}).get("count", 0))
    # When the replica takes over by hand (CLUSTER FAILOVER: both alive, roles swapped)
    cluster.node(replica).execute_command("CLUSTER", "FAILOVER")
    assert cluster.wait_for_failover(key_slot(lead_key(LOC, lead).encode()), master) == replica
    # Then the client's next call meets MOVED at the old master, follows it, and the breaker saw no failure
    store.record(LOC, lead, signal=Signal.LISTING_VIEW, event_id="after")
    moved_after = int(cluster.node(master).info("errorstats").get("errorstat_MOVED", {}).get("count", 0))
    assert moved_after > moved_before
    state = store.load(LOC, lead)
    assert state is not None
    assert state.signals[Signal.LISTING_VIEW].count == 2
    assert (cache().breaker.is_open, cache().breaker._failures) == (False, 0)
