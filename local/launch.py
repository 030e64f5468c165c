"""The local stack as a child process (`python -m local`): started, awaited, stopped. Used by the
demo, the end-to-end tests and the speed-to-lead bench."""

from __future__ import annotations

import os
import signal
import socket
import subprocess  # nosec B404 # starts the local stack
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from local.template import ROOT

START_TIMEOUT = 120.0  # a loaded machine can take long to import everything
PORT_ATTEMPTS = 3


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class StackFailed(RuntimeError):
    """The stack exited or did not answer in time; the message ends with its log."""


class PortTaken(StackFailed):
    """The chosen port was in use by the time the stack bound it."""


@dataclass
class Launched:
    process: subprocess.Popen[bytes]
    base: str
    health: dict[str, Any]
    log_path: Path

    def stop(self) -> None:
        """SIGTERM (the stack stops what it started), then a kill if it hangs."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def launch(
    interval: int,
    log_path: Path,
    *,
    state_dir: Path | None = None,
    drop_env: Iterable[str] = (),
    env: Mapping[str, str] | None = None,
    verbose: bool = False,
    timeout: float = START_TIMEOUT,
    visibility_timeout: int | None = None,
) -> Launched:
    """Start the stack on a free port with the monitor every `interval` seconds; return once it is
    healthy. A port taken by another process between its choice and the stack's bind is tried again
    with another (up to PORT_ATTEMPTS).

    `drop_env` names variables of this process's environment the stack must not see (a user's
    REDIS_URL or keys, for a run that must stay on this machine); `env` adds variables (after the
    drop); `verbose` puts the functions' own logs and metrics in the log too (`python -m local --verbose`)."""
    base = {k: v for k, v in os.environ.items() if k not in set(drop_env)} | dict(env or {}) | {"NO_COLOR": "1"}
    extra = ["--visibility-timeout", str(visibility_timeout)] if visibility_timeout is not None else []
    for _ in range(PORT_ATTEMPTS - 1):
        try:
            return _launch(free_port(), interval, log_path, state_dir, base, verbose, timeout, extra)
        except PortTaken:
            continue
    return _launch(free_port(), interval, log_path, state_dir, base, verbose, timeout, extra)


def _launch(
    port: int,
    interval: int,
    log_path: Path,
    state_dir: Path | None,
    env: dict[str, str],
    verbose: bool,
    timeout: float,
    extra: list[str],
) -> Launched:
    command = [sys.executable, "-m", "local", "--port", str(port), "--interval", str(interval), *extra]
    if state_dir is not None:
        command += ["--state-dir", str(state_dir)]
    if verbose:
        command.append("--verbose")
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)  # nosec B603 # no shell; our own argv
    launched = Launched(process, f"http://127.0.0.1:{port}", {}, log_path)
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None or time.monotonic() > deadline:
            launched.stop()
            output = log_path.read_text()
            failure = PortTaken if f"port {port} is in use" in output else StackFailed
            raise failure(f"the local stack did not start:\n{output[-3000:]}")
        try:
            reply = httpx.get(f"{launched.base}/_local/health", timeout=1)
            if reply.status_code == 200:
                launched.health = reply.json()
                return launched
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
