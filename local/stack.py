"""The local stack: what template.yaml declares, started on this machine and stopped again.

Order of start: keys, Redis (REDIS_URL, else a redis-server of its own on a free port), moto (the
template's queues and secrets), one worker per function with the template's environment resolved
with local values, the HTTP server, the SQS pollers, the schedule timer. `stop()` ends all of it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess  # nosec B404 # starts redis-server and scripts/openapi.py
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from local import keys as local_keys
from local.aws import MOTO_KEY, DeadLetterWatch, Moto, Poller, Queue, create_queues, create_secrets, create_tables
from local.launch import free_port
from local.runtime import Log, Worker
from local.server import Frontend, JwtCheck, Route, asgi_app
from local.template import NO_VALUE, REGION, ROOT, TEMPLATE, FunctionSpec, Resolver, Stack, rate_seconds, read

DEFAULT_PORT = 3000
LOCAL_VISIBILITY_TIMEOUT = 3  # seconds; the template's 60-180 s would hide a retry for minutes
MIN_SETTINGS_INTERVAL = 10  # leadflow's settings refuse a BEHAVIORAL_MONITORING_INTERVAL below this
LAYER_DIR = ROOT / "layers" / "common"  # /opt/python on Lambda
# Variables the stack sets itself: a user's value for these would point the functions elsewhere.
OWNED = {
    "REDIS_URL",
    "REDIS_CLUSTER",
    "GHL_WEBHOOK_PUBLIC_KEY",
    "POWERTOOLS_LOG_LEVEL",
    "BEHAVIORAL_MONITORING_INTERVAL",
}
PASS_THROUGH = ("ANTHROPIC_BASE_URL",)


@dataclass(slots=True)
class Options:
    port: int = DEFAULT_PORT
    interval: int | None = None  # seconds between monitor runs; default: env, else the template's schedule
    visibility_timeout: int | None = LOCAL_VISIBILITY_TIMEOUT
    verbose: bool = False
    state_dir: Path = local_keys.STATE_DIR
    template: Path = TEMPLATE


def _die_with_parent() -> None:  # runs in the child between fork and exec
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class RedisServer:
    """A redis-server of the stack's own, on a free loopback port, nothing saved to disk."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if not binary:
            raise SystemExit(
                "redis-server is not on PATH: `make setup` installs it (apt-get install redis-server), "
                "or set REDIS_URL to a Redis of your own"
            )
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = subprocess.Popen(  # nosec B603 # no shell; redis-server found on PATH
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - started before any thread exists
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                return
            time.sleep(0.02)
        self.stop()
        raise SystemExit("redis-server did not start")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def _as_env(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)


def _refs(value: Any) -> set[str]:
    """Every name !Ref'd inside a value."""
    if isinstance(value, dict):
        found = {value["Ref"]} if isinstance(value.get("Ref"), str) else set()
        return found.union(*(_refs(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(_refs(v) for v in value))
    return set()


@dataclass(slots=True)
class LocalStack:
    options: Options
    log: Log
    stack: Stack | None = None
    keys: local_keys.LocalKeys | None = None
    redis: RedisServer | None = None
    redis_url: str = ""
    moto: Moto | None = None
    queues: dict[str, Queue] = field(default_factory=dict)
    workers: dict[str, Worker] = field(default_factory=dict)
    pollers: list[Poller] = field(default_factory=list)
    schedules: list[tuple[str, str, int]] = field(default_factory=list)  # function, expression, seconds
    stop_event: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)
    server: Any = None
    listener: Any = None
    started_at: float = 0.0
    openapi_lock: threading.Lock = field(default_factory=threading.Lock)
    openapi_document: bytes | None = None

    # ------------------------------------------------------------------ start
    def start(self) -> None:
        opts = self.options
        # Hold the HTTP port from the start, so that no server started below (redis-server, moto,
        # each on a free port) can be given it; uvicorn serves on this very socket.
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.listener.bind(("127.0.0.1", opts.port))
        except OSError:
            self.listener.close()
            raise SystemExit(f"port {opts.port} is in use on 127.0.0.1: pick another with --port") from None
        self.listener.listen(128)
        self.started_at = time.time()
        self.keys = local_keys.ensure(opts.state_dir)
        self.stack = stack = read(opts.template)
        for item in stack.unsupported:
            self.log.warn(f"not run locally: {item}")
        if os.environ.get("REDIS_URL"):
            self.redis_url = os.environ["REDIS_URL"]
            self.log.info(f"redis: {self.redis_url} (REDIS_URL)")
        else:
            self.redis = RedisServer()
            self.redis_url = self.redis.url
            self.log.info(f"redis: started redis-server on {self.redis_url}")
        self.moto = Moto()
        self.log.info(f"moto: SQS, Secrets Manager and DynamoDB on {self.moto.endpoint}")
        resolver = Resolver(stack.raw, self._parameters(stack))
        sqs = self.moto.client("sqs")
        self.queues = create_queues(stack, resolver, sqs, opts.visibility_timeout)
        for queue in self.queues.values():
            redrive = f", to {queue.dead_letter} after {queue.max_receive_count} receives" if queue.dead_letter else ""
            template = f"{queue.template_visibility_timeout} s" if queue.template_visibility_timeout else "default 30 s"
            shortened = (
                f" (the template's {template}, shortened locally)" if opts.visibility_timeout is not None else ""
            )
            self.log.info(f"queue {queue.logical_id}: visibility {queue.visibility_timeout} s{shortened}{redrive}")
        create_secrets(stack, resolver, self.moto.client("secretsmanager"), self._secret_values(stack))
        create_tables(stack, resolver, self.moto.client("dynamodb"))
        for spec in stack.functions.values():
            self.workers[spec.logical_id] = Worker(spec, self._environment(spec, resolver), opts.verbose)
        self._start_workers()
        frontend = Frontend(
            self._routes(stack, resolver), self._function_urls(stack), self.log, self.info, self.openapi
        )
        self._start_server(frontend)
        for source in stack.sqs_sources:
            if source.enabled:
                poller = Poller(source, self.queues[source.queue], self.workers[source.function], sqs, self.log)
                poller.start()
                self.pollers.append(poller)
        self._start_schedules(stack, resolver)
        self._spawn(self._housekeeping, "housekeeping")
        self._write_state()

    def _parameters(self, stack: Stack) -> dict[str, Any]:
        """The template's parameter defaults, with local values where the template needs one."""
        assert self.keys is not None
        params = stack.parameter_defaults()
        declared = set(params)
        local: dict[str, Any] = {
            "JwtIssuer": local_keys.ISSUER,
            "JwtAudience": [local_keys.AUDIENCE],
            "VpcId": "vpc-local",
            "SubnetIds": ["subnet-local"],
            "GhlWebhookPublicKey": self.keys.ghl_public_key,
            "GhlApiKeyConfigured": "true" if os.environ.get("GHL_API_KEY") else "false",
            "AnthropicApiKeyConfigured": "true" if os.environ.get("ANTHROPIC_API_KEY") else "false",
            "GhlClientId": os.environ.get("GHL_CLIENT_ID", ""),  # marketplace mode (GHL_CLIENT_SECRET: its secret)
            "GhlRedirectUri": os.environ.get("GHL_REDIRECT_URI", ""),
            "SendMode": os.environ.get("SEND_MODE") or ("live" if os.environ.get("GHL_API_KEY") else "dry-run"),
            "LogLevel": "INFO" if self.options.verbose else "WARNING",
        }
        params.update({k: v for k, v in local.items() if k in declared})
        # A user's value for a variable the template sets from a parameter wins (SENDING_HOURS=0-24 make dev).
        for spec in stack.functions.values():
            for name, value in spec.environment.items():
                overridable = name in os.environ and name not in OWNED
                if overridable and isinstance(value, dict) and value.get("Ref") in declared:
                    params[value["Ref"]] = os.environ[name]
        interval = self.interval_override()
        if interval is not None and interval >= MIN_SETTINGS_INTERVAL and "BehavioralMonitoringInterval" in declared:
            params["BehavioralMonitoringInterval"] = str(interval)
        for name, value in params.items():
            if value is None:
                params[name] = f"local-{name}"
        return params

    def interval_override(self) -> int | None:
        if self.options.interval is not None:
            return self.options.interval
        raw = os.environ.get("BEHAVIORAL_MONITORING_INTERVAL")
        return int(raw) if raw and raw.isdigit() else None

    def _secret_values(self, stack: Stack) -> dict[str, str]:
        """The value each secret holds locally: for the variable NAME_SECRET_ARN that names it, the
        user's NAME when set, else the local key (the whsec_ secret, the workflow token)."""
        assert self.keys is not None
        local = {"WEBHOOK_SIGNING_SECRET": self.keys.signing_secret, "WORKFLOW_WEBHOOK_TOKEN": self.keys.workflow_token}
        values: dict[str, str] = {}
        for spec in stack.functions.values():
            for name, value in spec.environment.items():
                if not name.endswith("_SECRET_ARN"):
                    continue
                plain = name.removesuffix("_SECRET_ARN")
                for logical_id in _refs(value) & set(stack.secrets):
                    secret = os.environ.get(plain) or local.get(plain)
                    if secret:
                        values[logical_id] = secret
        return values

    def _environment(self, spec: FunctionSpec, resolver: Resolver) -> dict[str, str]:
        assert self.moto is not None
        env = {
            name: _as_env(value) for name, value in resolver.resolve(spec.environment).items() if value is not NO_VALUE
        }
        env["REDIS_URL"] = self.redis_url
        env["REDIS_CLUSTER"] = os.environ.get("REDIS_CLUSTER", "false") if os.environ.get("REDIS_URL") else "false"
        for name in PASS_THROUGH:
            if os.environ.get(name):
                env[name] = os.environ[name]
        env |= {
            "AWS_ENDPOINT_URL": self.moto.endpoint,
            "AWS_ACCESS_KEY_ID": MOTO_KEY,
            "AWS_SECRET_ACCESS_KEY": MOTO_KEY,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_LAMBDA_FUNCTION_NAME": spec.logical_id,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory),
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{spec.logical_id}",
            "POWERTOOLS_TRACE_DISABLED": "true",  # no X-Ray daemon here
            "TZ": "UTC",
            "LANG": "C.UTF-8",
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PYTHONPATH": str(LAYER_DIR),
            "PYTHONUNBUFFERED": "1",
        }
        if "HOME" in os.environ:
            env["HOME"] = os.environ["HOME"]
        return env

    def _start_workers(self) -> None:
        """Start every function's worker at once (their cold starts overlap)."""

        def start(worker: Worker) -> tuple[str, float | str]:
            try:
                return worker.spec.short, worker.start()
            except RuntimeError as exc:
                return worker.spec.short, str(exc)

        with ThreadPoolExecutor(max_workers=len(self.workers) or 1) as pool:
            for name, outcome in pool.map(start, self.workers.values()):
                if isinstance(outcome, str):
                    self.log.warn(f"function {name} failed to load: {outcome}")
                else:
                    self.log.info(f"function {name}: loaded in {outcome:.0f} ms")

    def _routes(self, stack: Stack, resolver: Resolver) -> list[Route]:
        assert self.keys is not None
        routes = []
        for route in stack.routes:
            check = None
            name = stack.default_authorizer.get(route.api) if route.authorizer == "__default__" else route.authorizer
            authorizer = stack.authorizers.get(route.api, {}).get(name or "")
            if authorizer is not None:
                audience = resolver.resolve(authorizer.audience)
                check = JwtCheck(
                    self.keys.jwt_public_pem,
                    str(resolver.resolve(authorizer.issuer)),
                    [str(a) for a in (audience if isinstance(audience, list) else [audience])],
                )
            routes.append(Route(route.method, route.path, self.workers[route.function], check))
        return routes

    def _function_urls(self, stack: Stack) -> dict[str, Worker]:
        with_url = [spec for spec in stack.functions.values() if spec.url_auth is not None]
        if len(with_url) == 1:
            return {"": self.workers[with_url[0].logical_id]}
        return {f"/{spec.short}": self.workers[spec.logical_id] for spec in with_url}

    def _start_server(self, frontend: Frontend) -> None:
        import uvicorn

        config = uvicorn.Config(
            asgi_app(frontend, self.options.port),
            host="127.0.0.1",
            port=self.options.port,
            log_level="warning",
            access_log=False,
            lifespan="off",
        )
        self.server = uvicorn.Server(config)
        server, listener = self.server, self.listener
        self._spawn(lambda: server.run(sockets=[listener]), "http")
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.threads[-1].is_alive():
                raise SystemExit(f"the HTTP server did not start on 127.0.0.1:{self.options.port}")
            time.sleep(0.02)

    def _start_schedules(self, stack: Stack, resolver: Resolver) -> None:
        for schedule in stack.schedules:
            if not schedule.enabled:
                continue
            expression = str(resolver.resolve(schedule.expression))
            seconds = self.interval_override() or rate_seconds(expression)
            if seconds is None:
                self.log.warn(f"{schedule.function}.{schedule.event}: {expression} is not a rate(); not run locally")
                continue
            self.schedules.append((schedule.function, expression, seconds))
            self._spawn(
                lambda s=schedule, e=expression, n=seconds: self._timer(s.function, e, n), f"timer-{schedule.event}"
            )

    def _timer(self, function: str, expression: str, seconds: int) -> None:
        """Invoke the function with a scheduled event every `seconds`, as EventBridge does for the rule."""
        worker = self.workers[function]
        rule = f"arn:aws:events:{REGION}:123456789012:rule/leadflow-{function}"
        while not self.stop_event.wait(seconds):
            event = {
                "version": "0",
                "id": str(uuid.uuid4()),
                "detail-type": "Scheduled Event",
                "source": "aws.events",
                "account": "123456789012",
                "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "region": REGION,
                "resources": [rule],
                "detail": {},
            }
            invocation = worker.invoke(event)
            detail = invocation.error or _summary(invocation.result)
            if invocation.cold_ms is not None:
                detail += f"; cold start {invocation.cold_ms:.0f} ms"
            status, style = ("ok", "ok") if invocation.ok else ("error", "error")
            self.log.invocation(worker.spec.short, f"schedule every {seconds} s", status, invocation.ms, detail, style)

    def _housekeeping(self) -> None:
        assert self.moto is not None
        watch = DeadLetterWatch(self.queues, self.moto.client("sqs"), self.log)
        while not self.stop_event.wait(1.0):
            watch.check()

    def _spawn(self, target: Any, name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self.threads.append(thread)

    # ------------------------------------------------------------------ what is running
    def info(self) -> dict[str, Any]:
        assert self.moto is not None
        assert self.stack is not None
        base = f"http://127.0.0.1:{self.options.port}"
        return {
            "status": "ok",
            "pid": os.getpid(),
            "api_url": base,
            "webhook_url": base,
            "redis_url": self.redis_url,
            "moto_endpoint": self.moto.endpoint,
            "region": REGION,
            "state_dir": str(self.options.state_dir),
            "queues": {
                q.logical_id: {"url": q.url, "arn": q.arn, "dead_letter": q.dead_letter} for q in self.queues.values()
            },
            "functions": sorted(self.workers),
            "routes": [f"{r.method} {r.path}" for r in self.stack.routes],
            "schedules": [{"function": f, "expression": e, "every_seconds": s} for f, e, s in self.schedules],
            "started_at": self.started_at,
        }

    def openapi(self) -> bytes | str:
        """The HTTP API's OpenAPI document, made once on first request by scripts/openapi.py in a process of
        its own (it imports the functions' apps, which this process must not), or why it could not be."""
        with self.openapi_lock:
            if self.openapi_document is None:
                env = {name: os.environ[name] for name in ("PATH", "HOME", "LANG") if name in os.environ}
                try:
                    made = subprocess.run(  # nosec B603 # no shell; this Python, a script of the repo
                        [sys.executable, str(ROOT / "scripts" / "openapi.py")],
                        cwd=ROOT,
                        env=env | {"PYTHONPATH": str(LAYER_DIR), "AWS_DEFAULT_REGION": REGION},
                        capture_output=True,
                        timeout=60,
                        check=False,
                    )
                except subprocess.TimeoutExpired:
                    return "scripts/openapi.py took over 60 s"
                if made.returncode != 0:
                    return f"scripts/openapi.py failed: {made.stderr.decode(errors='replace')[-500:]}"
                self.openapi_document = made.stdout
            return self.openapi_document

    def _write_state(self) -> None:
        path = self.options.state_dir / "stack.json"
        path.write_text(json.dumps(self.info(), indent=2))

    def banner(self) -> None:
        assert self.stack is not None
        assert self.keys is not None
        base = f"http://127.0.0.1:{self.options.port}"
        self.log.info(f"ready on {base}")
        urls = [spec for spec in self.stack.functions.values() if spec.url_auth is not None]
        for spec in urls:
            self.log.info(
                f"  Function URL of {spec.short} (no JWT; {spec.url_auth}): {base}/  e.g. POST {base}/webhooks/ghl"
            )
        for route in self.stack.routes:
            self.log.info(
                f"  HTTP API (JWT) {route.method:<5} {base}{route.path}  -> {self.workers[route.function].spec.short}"
            )
        for function, expression, seconds in self.schedules:
            self.log.info(f"  schedule: {self.workers[function].spec.short} every {seconds} s (template: {expression})")
        for poller in self.pollers:
            src = poller.source
            self.log.info(
                f"  SQS: {poller.queue.logical_id} -> {poller.worker.spec.short} (batch {src.batch_size}"
                f"{', partial batch failures' if src.report_failures else ''})"
            )
        self.log.info('  a token for the HTTP API: make token   (curl -H "Authorization: Bearer $(make -s token)" ...)')

    # ------------------------------------------------------------------ stop
    def stop(self) -> None:
        self.stop_event.set()
        if self.server is not None:
            self.server.should_exit = True
        for poller in self.pollers:
            poller.stop()
        for poller in self.pollers:
            poller.join(3)
        for thread in self.threads:
            thread.join(5)
        if self.listener is not None:
            self.listener.close()
        with ThreadPoolExecutor(max_workers=max(1, len(self.workers))) as pool:
            list(pool.map(lambda w: w.stop(), self.workers.values()))
        if self.moto is not None:
            self.moto.stop()
        if self.redis is not None:
            self.redis.stop()
        with contextlib.suppress(OSError):
            state = self.options.state_dir / "stack.json"
            if json.loads(state.read_text()).get("pid") == os.getpid():
                state.unlink()


def _summary(result: Any) -> str:
    """A scheduled run's result in one short line: `queued=2 candidates=3 skipped={...}`."""
    if not isinstance(result, dict):
        return "" if result is None else str(result)[:120]
    parts = []
    for key, value in result.items():
        if isinstance(value, dict):
            if value:
                parts.append(f"{key}={','.join(f'{k}:{v}' for k, v in value.items())}")
        elif value is not None:  # a field that does not apply to this run (a fanned-out run's id, say)
            parts.append(f"{key}={value}")
    return " ".join(parts)[:200]


def run(options: Options) -> int:
    """`make dev`: start, serve until Ctrl-C or SIGTERM, stop everything."""
    log = Log()
    done = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        done.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    local = LocalStack(options, log)
    try:
        local.start()
        local.banner()
        while not done.wait(0.5):
            if local.server is not None and local.threads and not local.threads[0].is_alive():
                log.warn("the HTTP server stopped")
                break
    except SystemExit as exc:
        print(exc, file=sys.stderr)
        local.stop()
        return 1
    finally:
        if not local.stop_event.is_set():
            log.info("stopping: HTTP server, pollers, timer, workers, moto, redis-server")
            local.stop()
            log.info("stopped")
    return 0
