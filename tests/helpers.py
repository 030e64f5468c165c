"""Test helpers: load same-named handler modules by path, load event files, run a redis-server."""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import json
import shutil
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

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
    """

    def __init__(self, replies: dict[str, list[tuple[int, dict[str, str], Any]]]) -> None:
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
                stub.requests.append(
                    {"key": key, "headers": dict(self.headers), "json": json.loads(raw) if raw else None}
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
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
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
