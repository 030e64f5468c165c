"""Invoking functions: one worker process per function, one invocation at a time (like reserved
concurrency 1, so a function's module-level Powertools objects never serve two events at once),
the template's Timeout enforced, and one readable log line per invocation."""

from __future__ import annotations

import contextlib
import json
import os
import select
import subprocess  # nosec B404 # starts the functions' workers
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TextIO

from local.template import ROOT, FunctionSpec


class Log:
    """The stack's one log stream: a line per invocation, and what the stack itself does."""

    COLORS = {"ok": "32", "warn": "33", "error": "31", "dim": "2", "bold": "1"}

    def __init__(self, stream: TextIO | None = None, color: bool | None = None) -> None:
        self.stream = stream or sys.stdout
        if color is None:
            color = self.stream.isatty() and "NO_COLOR" not in os.environ
        self.color = color
        self.lock = threading.Lock()

    def paint(self, text: str, style: str) -> str:
        return f"\033[{self.COLORS[style]}m{text}\033[0m" if self.color else text

    def line(self, text: str) -> None:
        stamp = datetime.now().strftime("%H:%M:%S.%f")[:-3]
        with self.lock:
            self.stream.write(f"{self.paint(stamp, 'dim')}  {text}\n")
            self.stream.flush()

    def info(self, text: str) -> None:
        self.line(f"{self.paint('stack', 'bold'):<8}  {text}")

    def warn(self, text: str) -> None:
        self.line(f"{self.paint('stack', 'bold'):<8}  {self.paint(text, 'warn')}")

    def invocation(
        self, function: str, source: str, status: str, ms: float, detail: str = "", style: str = "ok"
    ) -> None:
        self.line(
            f"{self.paint(f'{function:<8}', 'bold')}  {source:<34} {self.paint(f'{status:>5}', style)} {ms:8.1f} ms"
            + (f"  {detail}" if detail else "")
        )


@dataclass(frozen=True, slots=True)
class Invocation:
    ok: bool
    result: Any
    error: str | None  # "Type: message" when the handler raised, timed out or the runtime died
    ms: float
    cold_ms: float | None  # the init duration when this invocation started the worker


class Worker:
    """A function's execution environment (local/worker.py), started on demand, restarted after a crash or timeout."""

    def __init__(self, spec: FunctionSpec, env: dict[str, str], verbose: bool = False) -> None:
        self.spec = spec
        self.env = env
        self.verbose = verbose
        self.lock = threading.Lock()
        self.process: subprocess.Popen[bytes] | None = None
        self.init_error: str | None = None

    def _spawn(self) -> float:
        """Start the worker and wait for its handler to load; returns the init time in ms."""
        command = [sys.executable, "-m", "local.worker", "--code-dir", str(self.spec.code_dir)]
        command += ["--handler", self.spec.handler, "--name", self.spec.logical_id]
        command += ["--timeout", str(self.spec.timeout), "--memory", str(self.spec.memory)]
        self.process = subprocess.Popen(  # nosec B603 # no shell; our own argv
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None if self.verbose else subprocess.DEVNULL,
            env=self.env,
            cwd=ROOT,
            start_new_session=True,  # Ctrl-C reaches the stack, which stops its workers in order
        )
        reply = self._read(60.0)
        if reply is None or not reply.get("ready"):
            detail = f"{reply.get('errorType')}: {reply.get('errorMessage')}" if reply else "no reply within 60 s"
            self.init_error = f"Runtime.ImportModuleError: {detail}"
            self._kill()
            raise RuntimeError(self.init_error)
        self.init_error = None
        return float(reply["ms"])

    def start(self) -> float:
        with self.lock:
            return self._spawn()

    def _read(self, timeout: float) -> dict[str, Any] | None:
        process = self.process
        assert process is not None
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], timeout)
        if not ready:
            return None
        line = process.stdout.readline()
        if not line:
            return {"ok": False, "errorType": "Runtime.ExitError", "errorMessage": "the runtime exited"}
        reply: dict[str, Any] = json.loads(line)
        return reply

    def invoke(self, event: Any) -> Invocation:
        with self.lock:
            cold: float | None = None
            began = time.perf_counter()
            if self.process is None or self.process.poll() is not None:
                try:
                    cold = self._spawn()
                except RuntimeError as exc:
                    return Invocation(False, None, str(exc), (time.perf_counter() - began) * 1000, None)
            process = self.process
            assert process is not None
            assert process.stdin is not None
            request = json.dumps({"id": str(uuid.uuid4()), "event": event}) + "\n"
            started = time.perf_counter()
            try:
                process.stdin.write(request.encode())
                process.stdin.flush()
            except (BrokenPipeError, OSError):
                self._kill()
                return Invocation(False, None, "Runtime.ExitError: the runtime exited", 0.0, cold)
            reply = self._read(self.spec.timeout + 0.5)
            ms = (time.perf_counter() - started) * 1000
            if reply is None:
                self._kill(force=True)  # Lambda ends the environment of a timed-out invocation
                return Invocation(False, None, f"Task timed out after {self.spec.timeout:.2f} seconds", ms, cold)
            if reply.get("errorType") == "Runtime.ExitError":
                self._kill()
            if reply.get("ok"):
                return Invocation(True, reply.get("result"), None, float(reply.get("ms", ms)), cold)
            error = f"{reply.get('errorType')}: {reply.get('errorMessage')}"
            return Invocation(False, None, error, float(reply.get("ms", ms)), cold)

    def _kill(self, force: bool = False) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        if force:
            process.kill()
        if process.stdin:
            with contextlib.suppress(OSError):
                process.stdin.close()
        try:
            process.wait(2)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        if process.stdout:
            process.stdout.close()

    def stop(self) -> None:
        """End the worker: EOF on its stdin, then a kill if it does not go."""
        got = self.lock.acquire(timeout=self.spec.timeout + 1)
        try:
            self._kill()
        finally:
            if got:
                self.lock.release()
