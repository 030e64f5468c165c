"""`make load`: a reconciled load run of the whole bundle on this machine.

Starts the local stack (`python -m local --verbose`, its log in a temporary folder) on a
redis-server of the run's own that keeps an append-only file (fsync always, as a production Redis
with persistence does: a kill loses no acknowledged write), installs the app in each location
through the GHL stand-in, and sends 50,000 signed webhooks of every kind (local/load_plan.py) for a
few hundred leads over a few locations, 12 in flight. Halfway through, Redis is killed (SIGKILL)
and restarted on the same port after --outage seconds: meanwhile the webhook spills to the intake
queue (200 accepted) or answers 429, which the client retries later as GHL would; the stack's
poller replays the spilled events once Redis is back. The monitor runs every --interval seconds
throughout, and every follow-up job goes through the send function in dry-run. When the queues
are drained and two monitor runs have changed nothing, it reconciles (local/load_report.py) and
prints one table. Exit status 1 when any line fails.

    python -m local.load [--webhooks 50000] [--leads 300] [--locations 4] [--concurrency 12]
                         [--outage 12] [--interval 5] [--seed 13] [--keep]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess  # nosec B404 # starts and kills the run's redis-server
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from local.launch import Launched, StackFailed, free_port, launch
from local.load_plan import Attempt, Keys, Plan, Step
from local.load_report import Outage, Result, Rules, Stored, Timing, read_metrics, read_redis, reconcile, render

SENDING_HOURS = (8, 21)
MAX_PER_DAY = 3
# The local stack's 3 s visibility timeout with the template's 5 receives sends a job that fails
# while Redis is down to the dead-letter queue within about 15 s: the length of the outage itself
# (in AWS the same 5 receives span 90 minutes). 15 s lets a job outlast the outage here too.
VISIBILITY_SECONDS = 15
RETRYABLE = (0, 429, 500, 502, 503, 504)  # no answer, or one that says nothing was kept: GHL sends it again
MAX_RETRY_ROUNDS = 20
# Never the user's Redis, keys or AI: the stack runs on the load's own redis-server and sends nothing out.
DROPPED = (
    "REDIS_URL",
    "REDIS_CLUSTER",
    "GHL_API_KEY",
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_BASE_URL",
    "GHL_REDIRECT_URI",
    "GHL_LOCATION_ID",
    "BEHAVIORAL_MONITORING_INTERVAL",
    "MIN_LIKELIHOOD",
    "STOP_ON_REPLY_HOURS",
    "DEFAULT_TIMEZONE",
)


@dataclass(slots=True)
class Options:
    webhooks: int = 50_000
    leads: int = 300
    locations: int = 4
    concurrency: int = 12
    outage: float = 12.0  # seconds Redis stays down
    interval: int = 5  # seconds between monitor runs
    seed: int = 13
    budget: float = 1800.0  # seconds of sending at most: past it no new request goes out
    retry_delay: float = 5.0  # GHL retries a 429 after minutes; here, seconds
    settle_timeout: float = 300.0
    keep: bool = False  # keep the state folder (keys, the stack's log, the append-only file)


class DurableRedis:
    """A redis-server on a free loopback port that keeps an append-only file, so that a kill -9
    loses nothing it acknowledged; killed and started again on the same port and file."""

    def __init__(self, directory: Path) -> None:
        binary = shutil.which("redis-server")
        if not binary:
            raise SystemExit("redis-server is not on PATH: `make setup` installs it")
        self.binary, self.directory = binary, directory
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        from local.stack import _die_with_parent

        command = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        command += ["--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.directory)]
        self.process = subprocess.Popen(  # nosec B603 # no shell; redis-server found on PATH
            command,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - a short fork-exec; the child runs no Python
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.ping():
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise SystemExit(f"redis-server did not start on port {self.port}")

    def ping(self) -> bool:
        """Up and done loading its file (a loading Redis answers -LOADING)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as conn:
                conn.sendall(b"PING\r\n")
                return conn.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


class Client:
    """Sends steps over HTTP, keeping every attempt; the STOP and DND moments as leadflow accepted them."""

    def __init__(self, base: str, plan: Plan, keys: Keys, concurrency: int) -> None:
        import httpx

        limits = httpx.Limits(max_connections=concurrency * 2, max_keepalive_connections=concurrency * 2)
        self.http = httpx.Client(base_url=base, timeout=30, limits=limits)
        self.plan, self.keys = plan, keys
        self.lock = threading.Lock()
        self.answered = 0  # first attempts of the stream answered (the outage waits for its moment)
        self.redis_down = threading.Event()
        self.answered_while_down = 0

    def send(self, step: Step) -> Attempt:
        import httpx

        self.plan.build(step, self.keys)
        sent = time.time()
        try:
            reply = self.http.post(f"/webhooks/{step.route}", content=step.body, headers=step.headers)
        except httpx.HTTPError as exc:
            status, outcome = 0, type(exc).__name__
        else:
            status, outcome = reply.status_code, reply.text[:120]
            with contextlib.suppress(ValueError, AttributeError):
                outcome = str(reply.json().get("status")) if status == 200 else outcome
        attempt = Attempt(sent, time.time(), status, outcome)
        with self.lock:
            first = not step.attempts
            step.attempts.append(attempt)
            if first and step.index >= 0:
                self.answered += 1
            if status == 200:
                self._accepted(step, attempt.answered)
        return attempt

    def _accepted(self, step: Step, answered: float) -> None:
        lead = step.lead
        if self.redis_down.is_set():
            self.answered_while_down += 1
        if step.kind == "stop" and (lead.stopped_at is None or answered < lead.stopped_at):
            lead.stopped_at = answered
        if (
            step.kind == "dnd_update"
            and lead.dnd_at is not None
            and (lead.dnd_on_at is None or answered < lead.dnd_on_at)
        ):
            lead.dnd_on_at = answered

    def close(self) -> None:
        self.http.close()


class LoadRun:
    def __init__(self, options: Options, out: Any = None) -> None:
        self.options = options
        self.out = out or sys.stdout
        self.plan = Plan(options.webhooks, options.leads, options.locations, options.seed)
        self.outage = Outage()
        self.timing = Timing()
        self.sent: list[Step] = []

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    # ------------------------------------------------------------------ the run
    def run(self) -> Result:
        from local.ghl_standin import CLIENT_ID, CLIENT_SECRET, GhlStandIn

        opts, plan = self.options, self.plan
        state_dir = Path(tempfile.mkdtemp(prefix="leadflow-load-"))
        log_path = state_dir / "stack.log"
        # The append-only file in memory where there is a tmpfs: a process killed loses nothing
        # written to it all the same, and an fsync on every write costs nothing there.
        shm = Path("/dev/shm")  # noqa: S108  # nosec B108 # a folder of its own in it (mkdtemp)
        aof_dir = Path(tempfile.mkdtemp(prefix="leadflow-load-redis-", dir=shm if os.access(shm, os.W_OK) else None))
        redis = DurableRedis(aof_dir)
        ghl = GhlStandIn(plan.locations[0])
        stack: Launched | None = None
        ok = False
        try:
            for location_id in plan.locations:
                ghl.add_code(f"install-{location_id}", location_id=location_id)
            env = {
                "REDIS_URL": redis.url,
                "REDIS_CLUSTER": "false",
                "SEND_MODE": "dry-run",
                "GHL_CLIENT_ID": CLIENT_ID,
                "GHL_CLIENT_SECRET": CLIENT_SECRET,
                "GHL_API_BASE_URL": ghl.url,
                "SENDING_HOURS": f"{SENDING_HOURS[0]}-{SENDING_HOURS[1]}",
                "MAX_DAILY_FOLLOWUPS_PER_LEAD": str(MAX_PER_DAY),
            }
            began = time.monotonic()
            self.say(f"starting the local stack (its log: {log_path}) ...")
            stack = launch(
                opts.interval,
                log_path,
                state_dir=state_dir,
                drop_env=DROPPED,
                env=env,
                verbose=True,
                visibility_timeout=VISIBILITY_SECONDS,
            )
            self.timing.stack_start_seconds = time.monotonic() - began
            self._install(stack.base)
            result = self._load(stack, redis, state_dir, ghl)
            ok = result.ok
            return result
        finally:
            if stack is not None:
                stack.stop()
            redis.stop()
            ghl.close()
            shutil.rmtree(aof_dir, ignore_errors=True)
            if ok and not opts.keep:
                shutil.rmtree(state_dir, ignore_errors=True)
            else:
                self.say(f"kept: {state_dir} (the stack's log and keys)")

    def _install(self, base: str) -> None:
        import httpx

        for location_id in self.plan.locations:
            reply = httpx.get(f"{base}/oauth/callback", params={"code": f"install-{location_id}"}, timeout=30)
            if reply.status_code != 200:
                raise RuntimeError(f"installing the app in {location_id}: {reply.status_code} {reply.text[:200]}")

    def _load(self, stack: Launched, redis: DurableRedis, state_dir: Path, ghl: Any) -> Result:
        from cryptography.hazmat.primitives import serialization

        from local.keys import ensure

        opts, plan = self.options, self.plan
        local_keys = ensure(state_dir)
        keys = Keys(
            serialization.load_pem_private_key(local_keys.ghl_private_pem, password=None),
            local_keys.signing_secret,
            local_keys.workflow_token,
        )
        client = Client(stack.base, plan, keys, opts.concurrency)
        self.say(
            f"sending {opts.webhooks:,} webhooks for {len(plan.leads)} leads over {len(plan.locations)} locations, "
            f"{opts.concurrency} in flight; Redis dies after {plan.kill_after:,} answers, for {opts.outage:g} s ..."
        )
        try:
            self.timing.started = time.time()
            # Redis is killed and started again from this thread: the one that started it first,
            # which outlives it (redis-server dies with the thread that started it, PR_SET_PDEATHSIG).
            stream = threading.Thread(target=self._stream, args=(client,), name="stream", daemon=True)
            stream.start()
            self._outage(client, redis, stream)
            stream.join()
            self.timing.stream_done = time.time()
            self.say(
                f"  sent in {self.timing.stream_done - self.timing.started:.1f} s; retrying what was not taken ..."
            )
            self._retry(client)
            self.timing.retries_done = time.time()
            self.say("  waiting for the replay, the monitor and the send function to finish ...")
            stored = Stored()
            stored.settled = self._settle(stack, local_keys)
            self.timing.settled = time.time()
            self._collect(stack, redis, local_keys, ghl, stored, stack.log_path)
        finally:
            client.close()
        rules = Rules(SENDING_HOURS, MAX_PER_DAY, opts.interval)
        return reconcile(plan, self.sent, stored, self.outage, self.timing, rules, opts.concurrency)

    def _stream(self, client: Client) -> None:
        """Every step once, `concurrency` in flight, in the plan's order; none started past the budget."""
        opts = self.options
        deadline = time.monotonic() + opts.budget
        gate = threading.BoundedSemaphore(opts.concurrency * 2)
        with ThreadPoolExecutor(opts.concurrency, thread_name_prefix="load") as pool:
            for step in self.plan.stream():
                if time.monotonic() > deadline:
                    self.say(f"  budget of {opts.budget:g} s spent: stopped at {len(self.sent):,} requests")
                    break
                gate.acquire()
                self.sent.append(step)
                pool.submit(client.send, step).add_done_callback(lambda _: gate.release())
                if (step.index + 1) % 5000 == 0:
                    self.say(f"  {step.index + 1:,} sent, {time.time() - self.timing.started:.0f} s")

    def _outage(self, client: Client, redis: DurableRedis, stream: threading.Thread) -> None:
        """Kill Redis once `kill_after` requests are answered; the outage's STOPs; restart it."""
        while client.answered < self.plan.kill_after and stream.is_alive():
            time.sleep(0.01)
        if client.answered < self.plan.kill_after:
            return  # the stream ended first (its budget spent)
        self.outage.killed_at = time.time()
        self.outage.answers_before = client.answered
        client.redis_down.set()
        redis.kill()
        self.say(f"  Redis killed after {client.answered:,} answers")
        for step in self.plan.outage_steps:
            self.sent.append(step)
            client.send(step)
        time.sleep(max(0.0, self.outage.killed_at + self.options.outage - time.time()))
        self.outage.restarted_at = time.time()
        redis.start()
        self.outage.ready_at = time.time()
        client.redis_down.clear()
        self.outage.answered_during = client.answered_while_down
        self.say(f"  Redis back after {self.outage.ready_at - self.outage.killed_at:.1f} s")

    def _retry(self, client: Client) -> None:
        """Send again what got no 200 (429, or no answer), after a delay, as GHL would."""
        for _ in range(MAX_RETRY_ROUNDS):
            waiting = [step for step in self.sent if not step.ok and step.attempts[-1].status in RETRYABLE]
            if not waiting:
                return
            time.sleep(self.options.retry_delay)
            with ThreadPoolExecutor(self.options.concurrency) as pool:
                list(pool.map(client.send, waiting))

    def _settle(self, stack: Launched, local_keys: Any) -> bool:
        """Until the intake and follow-up queues are empty, no job is pending, and nothing changed
        over two monitor runs; False when that takes longer than settle_timeout."""
        import httpx

        sqs = _sqs(stack)
        queues = stack.health["queues"]
        token = local_keys.token(subject="load")
        deadline = time.monotonic() + self.options.settle_timeout
        quiet_for = 2 * self.options.interval + 1
        last: Any = None
        changed = time.monotonic()
        with httpx.Client(base_url=stack.base, timeout=30, headers={"authorization": f"Bearer {token}"}) as api:
            while time.monotonic() < deadline:
                depths = [_depth(sqs, queues[name]["url"]) for name in ("IntakeQueue", "FollowupQueue")]
                stats = [api.get("/followups/stats", params={"location_id": loc}).json() for loc in self.plan.locations]
                snapshot = (depths, [(s.get("total_tasks"), s.get("pending"), s.get("sent")) for s in stats])
                if snapshot != last:
                    last, changed = snapshot, time.monotonic()
                drained = not any(depths) and all(s.get("pending") == 0 for s in stats)
                if drained and time.monotonic() - changed >= quiet_for:
                    return True
                time.sleep(1)
        return False

    def _collect(
        self, stack: Launched, redis: DurableRedis, local_keys: Any, ghl: Any, stored: Stored, log: Path
    ) -> None:
        import httpx
        import redis as redis_py

        client = redis_py.Redis.from_url(redis.url, decode_responses=True, socket_timeout=30)
        try:
            found = read_redis(client, self.plan)
        finally:
            client.close()
        for name in ("seen", "unknown_seen", "signals", "profile", "history"):
            setattr(stored, name, getattr(found, name))
        token = local_keys.token(subject="load")
        with httpx.Client(base_url=stack.base, timeout=30, headers={"authorization": f"Bearer {token}"}) as api:
            for location_id in self.plan.locations:
                stored.stats[location_id] = api.get("/followups/stats", params={"location_id": location_id}).json()
        sqs = _sqs(stack)
        for name, queue in stack.health["queues"].items():
            stored.queues[name] = _depth(sqs, queue["url"])
        stored.metrics, stored.spilled_by_type = read_metrics(log)
        for request in list(ghl.requests):
            stored.ghl_requests[str(request["path"])] += 1


def _sqs(stack: Launched) -> Any:
    import boto3

    return boto3.client(
        "sqs",
        endpoint_url=stack.health["moto_endpoint"],
        region_name=stack.health["region"],
        aws_access_key_id="local",
        aws_secret_access_key="local",  # noqa: S106  # nosec B106 # moto's, not a secret
    )


def _depth(sqs: Any, url: str) -> int:
    names = [
        "ApproximateNumberOfMessages",
        "ApproximateNumberOfMessagesNotVisible",
        "ApproximateNumberOfMessagesDelayed",
    ]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
    return sum(int(attributes.get(name, 0)) for name in names)


def title(options: Options, plan: Plan) -> str:
    return (
        f"leadflow load run: {len(plan.steps):,} signed webhooks, {len(plan.leads)} leads over "
        f"{len(plan.locations)} locations, {options.concurrency} in flight, Redis killed once for {options.outage:g} s"
    )


def main(argv: list[str] | None = None) -> int:
    defaults = Options()
    parser = argparse.ArgumentParser(
        prog="python -m local.load", description=__doc__.splitlines()[0] if __doc__ else ""
    )
    parser.add_argument("--webhooks", type=int, default=defaults.webhooks)
    parser.add_argument("--leads", type=int, default=defaults.leads)
    parser.add_argument("--locations", type=int, default=defaults.locations)
    parser.add_argument("--concurrency", type=int, default=defaults.concurrency, help="requests in flight")
    parser.add_argument("--outage", type=float, default=defaults.outage, help="seconds Redis stays down")
    parser.add_argument("--interval", type=int, default=defaults.interval, help="seconds between monitor runs")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--budget", type=float, default=defaults.budget, help="seconds of sending at most")
    parser.add_argument("--keep", action="store_true", help="keep the state folder even when every line holds")
    args = parser.parse_args(argv)
    options = Options(**vars(args))
    run = LoadRun(options)
    try:
        result = run.run()
    except (StackFailed, RuntimeError) as exc:
        print(f"load run failed: {exc}", file=sys.stderr)
        return 1
    print()
    print(render(result, title(options, run.plan)))
    return 0 if result.ok else 1


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        raise SystemExit(main())
