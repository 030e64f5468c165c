"""The local stack in a subprocess (`python -m local`), one per xdist worker, reached only over HTTP."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from local.keys import LocalKeys, ensure
from local.launch import StackFailed, launch

INTERVAL = 2  # seconds between monitor runs
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
    try:
        launched = launch(INTERVAL, state_dir / "stack.log", state_dir=state_dir, drop_env=DROPPED)
    except StackFailed as exc:
        pytest.fail(str(exc))
    http = httpx.Client(base_url=launched.base, timeout=30)
    try:
        yield Stack(launched.base, ensure(state_dir), launched.health, http)
    finally:
        http.close()
        launched.stop()


@pytest.fixture
def location_id() -> str:
    """A location of the test's own, so tests sharing one stack do not see each other's leads."""
    return f"e2e-{uuid.uuid4().hex[:8]}"
