"""Test helpers: load same-named handler modules by path, load event files, run a redis-server."""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
EVENTS = ROOT / "tests" / "events"


def load_app(function: str) -> ModuleType:
    """functions/<function>/app.py as module `<function>_app` (four files named app.py would collide)."""
    name = f"{function}_app"
    path = ROOT / "functions" / function / "app.py"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def load_event(name: str) -> dict[str, Any]:
    return copy.deepcopy(json.loads((EVENTS / f"{name}.json").read_text()))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LambdaContext:
    function_name: str = "test"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:test"
    aws_request_id: str = "52fdfc07-2182-154f-163f-5f0f9a621d72"

    def get_remaining_time_in_millis(self) -> int:
        return 180_000  # the send function's timeout


class RedisServer:
    """A redis-server of the tests' own on a free port, which a test may stop and start again."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if not binary:
            raise RuntimeError("redis-server is not installed: run `make setup` (or apt-get install redis-server)")
        self.binary = binary
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.process:
            self.process.terminate()
            self.process.wait(10)
            self.process = None


def raw_redis(url: str, **options: Any) -> Any:
    """A client for a test's own look at Redis (not the code under test's): cluster-aware when the
    test runs with REDIS_CLUSTER=true (keys live on several masters there)."""
    import redis

    if os.environ.get("REDIS_CLUSTER", "").lower() == "true":
        return redis.RedisCluster.from_url(url, **options)
    return redis.Redis.from_url(url, **options)


def pause_clients(raw: Any, milliseconds: int) -> None:
    """CLIENT PAUSE ALL through a `raw_redis` client: Redis holds every command for a while (on every
    node of a cluster)."""
    import redis

    if isinstance(raw, redis.RedisCluster):
        raw.execute_command("CLIENT", "PAUSE", milliseconds, "ALL", target_nodes=redis.RedisCluster.ALL_NODES)
    else:
        raw.execute_command("CLIENT", "PAUSE", milliseconds, "ALL")


def http_event(
    method: str,
    path: str,
    route: str,
    *,
    body: Any = None,
    query: dict[str, str] | None = None,
    path_params: dict[str, str] | None = None,
    raw_body: str | None = None,
) -> dict[str, Any]:
    """An API Gateway HTTP API (payload 2.0) event from tests/events/http_api.json for one request."""
    from urllib.parse import urlencode

    event = load_event("http_api")
    event["routeKey"] = event["requestContext"]["routeKey"] = f"{method} {route}"
    event["rawPath"] = event["requestContext"]["http"]["path"] = path
    event["requestContext"]["http"]["method"] = method
    event["queryStringParameters"] = query or None
    event["rawQueryString"] = urlencode(query or {})
    event["pathParameters"] = path_params or None
    if raw_body is not None:
        event["body"] = raw_body
    elif body is not None:
        event["body"] = json.dumps(body)
    return event


CLOSE = -1  # a StubServer reply: read the request, then close the connection without answering


class StubServer:
    """A local HTTP stand-in (for GHL or the Anthropic API): replies from a script, records requests.

    `replies` maps "METHOD /path" to a list of (status, headers, json body); the last one repeats.
    Faults: status CLOSE reads the request and closes the connection without a reply; a header
    `X-Stub-Delay: <seconds>` answers that late. `on_request(request)` runs before each reply.
    Each request records its arrival time `at` on `clock` (a VirtualClock in rate-limit tests).
    """

    def __init__(
        self, replies: dict[str, list[tuple[int, dict[str, str], Any]]], clock: Callable[[], float] = time.time
    ) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.replies = replies
        self.requests: list[dict[str, Any]] = []
        self.on_request: Any = None
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def _reply(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                key = f"{self.command} {self.path.split('?')[0]}"
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:  # a form-encoded body (OAuth): see `raw`
                    body = None
                stub.requests.append(
                    {"key": key, "headers": dict(self.headers), "json": body, "raw": raw, "at": clock()}
                )
                script = stub.replies.get(key) or [(404, {}, {"message": "not found"})]
                status, headers, body = script.pop(0) if len(script) > 1 else script[0]
                if stub.on_request:
                    stub.on_request(stub.requests[-1])
                if status == CLOSE:
                    self.close_connection = True
                    return
                headers = dict(headers)
                threading.Event().wait(float(headers.pop("X-Stub-Delay", 0)))  # tests may stub time.sleep
                payload = json.dumps(body).encode()
                self.send_response(status)
                for name, value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = _reply

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)  # quick to close
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def calls(self, key: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["key"] == key]


def sqs_event(bodies: list[str], receive_count: int = 1) -> dict[str, Any]:
    """An SQS event (tests/events/sqs_followup.json) carrying the given message bodies."""
    template = load_event("sqs_followup")["Records"][0]
    records = []
    for i, body in enumerate(bodies):
        record = copy.deepcopy(template)
        record["messageId"] = f"{template['messageId'][:-4]}{i:04d}"
        record["body"] = body
        record["attributes"]["ApproximateReceiveCount"] = str(receive_count)
        records.append(record)
    return {"Records": records}


def zone_at(local_hour: int, now: float | None = None) -> str:
    """A fixed-offset IANA zone in which it is `local_hour` o'clock now (Etc/GMT signs are inverted)."""
    hour = int(((time.time() if now is None else now) // 3600) % 24)
    offset = (local_hour - hour) % 24
    if offset > 14:
        offset -= 24
    return "Etc/GMT" + (f"{-offset:+d}" if offset else "")


def seed_lead(
    contact_id: str,
    signals: dict[str, int],
    *,
    location_id: str = "loc-1",
    hours_ago: float = 0.1,
    profile: dict[str, Any] | None = None,
    now: float | None = None,
) -> Any:
    """Record `signals` (name -> how many events, `hours_ago`) and a profile for one lead."""
    from leadflow.lead_state import LeadStore, encode_profile
    from leadflow.signals import Signal

    now = time.time() if now is None else now
    store = LeadStore()
    recorded = None
    fields = encode_profile(profile or {})
    for name, n in signals.items():
        for i in range(n):
            at = now - hours_ago * 3600 - i * 60
            recorded = store.record(location_id, contact_id, signal=Signal(name), at=at, fields=fields, now=now)
    if recorded is None:
        recorded = store.record(location_id, contact_id, fields=fields, now=now)
    return recorded


HOT = {"pricing_tool_usage": 2, "agent_inquiry": 1, "neighborhood_research": 1}
URGENT = {
    "pricing_tool_usage": 3,
    "agent_inquiry": 2,
    "neighborhood_research": 2,
    "market_report_engagement": 2,
    "property_search": 3,
}


def seed_example(now: datetime) -> dict[str, list[dict[str, str]]]:
    """The seed's worked example as `activity_data`: two pricing-tool uses today (5 h and 1 h ago),
    an agent call yesterday (20 h ago), neighbourhood research today (6 h ago). Timestamps are UTC
    without a zone, as the seed writes them. (The same lead as the benches' shared workload gives,
    kept here so that the suite needs nothing outside the repository.)"""

    def ts(hours: float) -> str:
        return (now - timedelta(hours=hours)).astimezone(UTC).replace(tzinfo=None).isoformat()

    return {
        "pricing_tool_uses": [{"timestamp": ts(5)}, {"timestamp": ts(1)}],
        "agent_inquiries": [{"timestamp": ts(20), "type": "call"}],
        "neighborhood_research": [{"timestamp": ts(6)}],
    }


def claude_reply(text: str) -> tuple[int, dict[str, str], dict[str, Any]]:
    return 200, {}, {
        "id": "msg_01", "type": "message", "role": "assistant", "model": "claude-haiku-4-5",
        "content": [{"type": "text", "text": text}], "stop_reason": "end_turn", "stop_sequence": None,
        "usage": {"input_tokens": 120, "output_tokens": 30},
    }  # fmt: skip


class SlowReplyProxy:
    """A TCP proxy in front of a redis-server that can hold back the next reply: the command has run,
    its answer comes late. redis-py then times out and sends the command again (its retry), which is
    the fault the idempotent Redis writes exist for."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.delay = 0.0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def delay_next_reply(self, seconds: float) -> None:
        with self._lock:
            self.delay = seconds

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, replies: bool) -> None:
        try:
            while data := source.recv(65536):
                if replies:
                    with self._lock:
                        delay, self.delay = self.delay, 0.0
                    time.sleep(delay)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.close()

    def close(self) -> None:
        self.listener.close()


def blackhole() -> tuple[socket.socket, str]:
    """A listening socket that never answers: connections open, requests go unread (a blackholed
    endpoint). Returns the socket (close it when done) and its URL."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=64)
    return listener, f"http://127.0.0.1:{listener.getsockname()[1]}"


class VirtualClock:
    """Time for rate-limit tests, shared by worker threads, that moves only when every worker sleeps:
    `sleep(s)` blocks the thread until the clock reaches its wake time, and once all workers sleep
    the clock jumps to the earliest one. Nothing else moves it, so a request stamped with it at a
    stub server arrives at the very time the limiter admitted it, and the suite stays fast."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start
        self._cond = threading.Condition()
        self._workers = 0
        self._wakes: list[float] = []

    def __call__(self) -> float:
        with self._cond:
            return self.now

    @contextlib.contextmanager
    def worker(self) -> Any:
        """The calling thread takes part: the clock waits for it unless it sleeps."""
        with self._cond:
            self._workers += 1
        try:
            yield
        finally:
            with self._cond:
                self._workers -= 1
                self._advance()

    def sleep(self, seconds: float) -> None:
        with self._cond:
            wake = self.now + max(0.0, seconds)
            self._wakes.append(wake)
            self._advance()
            while self.now < wake:
                self._cond.wait()
            self._wakes.remove(wake)

    def _advance(self) -> None:
        if self._wakes and len(self._wakes) >= self._workers:
            self.now = max(self.now, min(self._wakes))
            self._cond.notify_all()


def most_in_any_window(times: list[float], seconds: float) -> int:
    """The largest number of `times` inside any closed interval `seconds` long."""
    ordered, most, start = sorted(times), 0, 0
    for end, t in enumerate(ordered):
        while t - ordered[start] > seconds:
            start += 1
        most = max(most, end - start + 1)
    return most


def free_port_pair() -> int:
    """A free port P whose cluster bus port, P + 10000, is free too."""
    for _ in range(200):
        port = free_port()
        if port + 10_000 > 65_535:
            continue
        try:
            with socket.socket() as s:
                s.bind(("127.0.0.1", port + 10_000))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


class RedisClusterServers:
    """A real Redis cluster of the tests' own, from the redis-server binary: `masters` masters with
    one replica each (3 + 3 by default), every node on free ports in a temp dir, built with
    `redis-cli --cluster create`. A test may SIGKILL a master and wait for its replica to take over
    (`kill`, `wait_for_failover`).

    A short node timeout makes a failover take a few seconds: the master is marked failing after
    `node_timeout_ms`, its replica elected some 0.5-1.5 s later."""

    def __init__(self, masters: int = 3, node_timeout_ms: int = 1000) -> None:
        server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
        if not server or not cli:
            raise RuntimeError("redis-server or redis-cli is not installed: run `make setup`")
        self.server_binary, self.cli_binary = server, cli
        self.node_timeout_ms = node_timeout_ms
        self.workdir = Path(tempfile.mkdtemp(prefix="leadflow-cluster-"))
        self.size = masters * 2
        self.ports: list[int] = []
        self.processes: dict[int, subprocess.Popen[bytes]] = {}
        self._clients: dict[int, Any] = {}

    # Lifecycle

    def start(self) -> None:
        try:
            for attempt in range(3):  # a port taken between free_port_pair() and redis-server: new ports
                self.ports = [free_port_pair() for _ in range(self.size)]
                try:
                    for port in self.ports:
                        self._spawn(port)
                    for port in self.ports:
                        self._wait_for_ping(port)
                    break
                except RuntimeError:
                    for port in list(self.processes):
                        self._end(port, signal.SIGKILL)
                    if attempt == 2:
                        raise
            addresses = [f"127.0.0.1:{port}" for port in self.ports]
            argv = [self.cli_binary, "--cluster", "create", *addresses, "--cluster-replicas", "1", "--cluster-yes"]
            created = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=60)
            if created.returncode != 0:
                raise RuntimeError(f"redis-cli --cluster create failed: {created.stdout[-600:]}{created.stderr[-600:]}")
            self.wait_until_ok()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        for port in list(self.processes):
            self._end(port, signal.SIGTERM)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def kill(self, port: int) -> None:
        """SIGKILL one node: no shutdown, no last write to its replica."""
        self._end(port, signal.SIGKILL)

    def _spawn(self, port: int) -> None:
        node_dir = self.workdir / str(port)
        node_dir.mkdir(exist_ok=True)
        argv = [self.server_binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(node_dir)]
        argv += ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
        argv += ["--cluster-node-timeout", str(self.node_timeout_ms), "--save", "", "--appendonly", "no"]
        argv += ["--repl-diskless-sync-delay", "0"]  # a replica syncs at once, not 5 s later
        self.processes[port] = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def _end(self, port: int, how: signal.Signals) -> None:
        process = self.processes.pop(port, None)
        if process and process.poll() is None:
            process.send_signal(how)
            process.wait(10)
        client = self._clients.pop(port, None)
        if client is not None:
            client.close()

    def _wait_for_ping(self, port: int, seconds: float = 10) -> None:
        deadline = time.monotonic() + seconds
        while True:
            process = self.processes.get(port)
            if process is None or process.poll() is not None:
                raise RuntimeError(f"redis-server on port {port} exited")
            try:
                if self.node(port).ping():
                    return
            except Exception as exc:  # redis.ConnectionError until it listens, BusyLoadingError while it loads
                if time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server on port {port} does not answer") from exc
            time.sleep(0.02)

    # Looking at it

    @property
    def alive(self) -> list[int]:
        return [port for port, process in self.processes.items() if process.poll() is None]

    @property
    def url(self) -> str:
        """A REDIS_URL for REDIS_CLUSTER=true: any live node (the client discovers the others)."""
        return f"redis://127.0.0.1:{self.masters()[0]}/0"

    def node(self, port: int) -> Any:
        """A plain client of one node (for CLUSTER commands and a node's own view)."""
        import redis

        if port not in self._clients:
            client = redis.Redis(port=port, decode_responses=True, socket_timeout=2, socket_connect_timeout=1)
            self._clients[port] = client
        return self._clients[port]

    def client(self) -> Any:
        """A cluster-aware client for assertions (not the code under test's)."""
        import redis

        return redis.RedisCluster(host="127.0.0.1", port=self.masters()[0], decode_responses=True)

    def info(self, port: int) -> dict[str, str]:
        text = str(self.node(port).execute_command("CLUSTER", "INFO"))
        return dict(line.split(":", 1) for line in text.split() if ":" in line)

    def slot_owners(self, port: int) -> dict[int, int]:
        """Slot range start -> port of its master, as node `port` sees it."""
        ranges = self.node(port).execute_command("CLUSTER", "SLOTS")
        owners: dict[int, int] = {}
        for entry in ranges:
            start, _end, master = entry[0], entry[1], entry[2]
            owners[int(start)] = int(master[1])
        return owners

    def owner(self, slot: int, port: int | None = None) -> int:
        """The port of the master serving `slot`, as one live node sees it."""
        ranges = self.node(port or self.alive[0]).execute_command("CLUSTER", "SLOTS")
        for start, end, master, *_replicas in ranges:
            if int(start) <= slot <= int(end):
                return int(master[1])
        raise LookupError(f"slot {slot} is not served")

    def masters(self) -> list[int]:
        """The live masters, each by its own ROLE: another node's view lags (just after the cluster
        is made, a replica is still a slotless master in its peers' CLUSTER NODES for a while)."""
        return sorted(port for port in self.alive if self.node(port).execute_command("ROLE")[0] == "master")

    def replica_of(self, master: int) -> int:
        roles = self._nodes()
        master_id = next(node_id for node_id, (port, _flags, _of) in roles.items() if port == master)
        return next(port for port, flags, of in roles.values() if of == master_id and "fail" not in flags)

    def _nodes(self, port: int | None = None) -> dict[str, tuple[int, str, str]]:
        """node id -> (port, flags, master id or "-"), from CLUSTER NODES on a live node; failed nodes left out."""
        text = str(self.node(port or self.alive[0]).execute_command("CLUSTER", "NODES"))
        nodes: dict[str, tuple[int, str, str]] = {}
        for line in text.strip().splitlines():
            node_id, address, flags, master_id = line.split()[:4]
            port = int(address.split("@")[0].rsplit(":", 1)[1])
            if port in self.alive:
                nodes[node_id] = (port, flags, master_id)
        return nodes

    # Waiting for it

    def wait_until_ok(self, seconds: float = 30) -> None:
        """Every live node says cluster_state:ok and sees all slots served by the same live masters, and
        every replica is linked to its master and in sync."""
        deadline = time.monotonic() + seconds
        while True:
            try:
                if self._settled():
                    return
            except Exception:  # a node mid-restart, a reply mid-change: look again
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the cluster did not settle: " + repr({p: self.info(p) for p in self.alive}))
            time.sleep(0.05)

    def _settled(self) -> bool:
        alive = set(self.alive)
        views = []
        for port in alive:
            info = self.info(port)
            if info.get("cluster_state") != "ok" or info.get("cluster_slots_ok") != "16384":
                return False
            views.append(self.slot_owners(port))
        if any(view != views[0] for view in views) or not set(views[0].values()) <= alive:
            return False  # some node has not heard of a change yet
        roles = {port: self.node(port).execute_command("ROLE")[0] == "master" for port in alive}
        for port in alive:  # every node knows every other's role (a new replica is a master a while)
            if any(("master" in flags) != roles[peer] for peer, flags, _ in self._nodes(port).values()):
                return False
        for port in alive:  # every replica linked to its master, every master's replicas in sync
            role = self.node(port).execute_command("ROLE")
            if role[0] == "slave" and role[3] != "connected":
                return False
            if role[0] == "master":
                replication = self.node(port).info("replication")
                replicas = [v for k, v in replication.items() if k.startswith("slave") and k[5:].isdigit()]
                if any(replica.get("state") != "online" for replica in replicas):
                    return False
        return True

    def wait_for_failover(self, slot: int, dead: int, seconds: float = 20) -> int:
        """After `dead` (a master) was killed: wait until every live node says cluster_state:ok and
        serves `slot` from the same live master (its promoted replica). Returns that master's port."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                owners = {self.owner(slot, port) for port in self.alive}
                if (
                    len(owners) == 1
                    and dead not in owners
                    and all(self.info(port).get("cluster_state") == "ok" for port in self.alive)
                ):
                    return owners.pop()
            except Exception:  # a node answering mid-change: look again
                pass
            time.sleep(0.02)
        raise RuntimeError(f"no replica took over slot {slot} from {dead} within {seconds} s")

    def flushall(self) -> None:
        """Empty every master (their replicas follow). On a loaded machine a master can be failed over
        spuriously (the short node timeout) and answer READONLY: then wait for the cluster to settle
        and flush again."""
        import redis

        for attempt in range(3):
            try:
                for port in self.masters():
                    self.node(port).flushall()
                return
            except redis.ReadOnlyError:
                if attempt == 2:
                    raise
                self.wait_until_ok()


def count_round_trips(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """From now on, one entry per send to Redis (a command, or a whole pipeline)."""
    from redis.connection import AbstractConnection

    sent: list[int] = []
    original = AbstractConnection.send_packed_command

    def counting(self: AbstractConnection, command: Any, check_health: bool = True) -> None:
        sent.append(1)
        original(self, command, check_health)

    monkeypatch.setattr(AbstractConnection, "send_packed_command", counting)
    return sent
