"""The local stack in a subprocess (`python -m local`), one per xdist worker, reached only over HTTP."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from local.keys import LocalKeys, ensure
from tests.helpers import ROOT, free_port

INTERVAL = 2  # seconds between monitor runs
START_TIMEOUT = 120  # a loaded machine can take long to import everything
# Never the user's Redis or keys: the stack starts its own redis-server and sends nothing out.
DROPPED = (
    "REDIS_URL",
    "REDIS_CLUSTER",
    "GHL_API_KEY",
    "ANTHROPIC_API_KEY",
    "SEND_MODE",
    "BEHAVIORAL_MONITORING_INTERVAL",
)


@dataclass
class Stack:
    base: str
    keys: LocalKeys
    health: dict[str, Any]
    http: httpx.Client

    def api(
        self, method: str, path: str, location_id: str, body: Any = None, token: str | None = None
    ) -> httpx.Response:
        token = self.keys.token() if token is None else token
        headers = {"authorization": f"Bearer {token}"} if token else {}
        return self.http.request(method, path, params={"location_id": location_id}, headers=headers, json=body)

    def post_webhook(self, route: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
        return self.http.post(f"/webhooks/{route}", content=body, headers=headers)


def wait_for(check: Callable[[], Any], timeout: float, every: float = 0.2) -> Any:
    """Poll `check` until it returns something truthy; fail with its last value after `timeout`."""
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    pytest.fail(f"condition not met within {timeout} s (last value: {value!r})")


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    state_dir: Path = tmp_path_factory.mktemp("local-stack")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in DROPPED} | {"NO_COLOR": "1"}
    log_path = state_dir / "stack.log"
    command = [sys.executable, "-m", "local", "--port", str(port), "--interval", str(INTERVAL)]
    command += ["--state-dir", str(state_dir)]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    http = httpx.Client(base_url=base, timeout=30)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        health = None
        while health is None:
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the local stack did not start:\n{log_path.read_text()[-3000:]}")
            try:
                reply = http.get("/_local/health", timeout=1)
                health = reply.json() if reply.status_code == 200 else None
            except httpx.HTTPError:
                time.sleep(0.1)
        yield Stack(base, ensure(state_dir), health, http)
    finally:
        http.close()
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


@pytest.fixture
def location_id() -> str:
    """A location of the test's own, so tests sharing one stack do not see each other's leads."""
    return f"e2e-{uuid.uuid4().hex[:8]}"
