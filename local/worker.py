"""One function's execution environment: a process of its own, as Lambda gives each function.

Started by the stack with exactly the function's environment (the template's variables, resolved
locally). It imports the handler once (the cold start), then reads one invocation per line on
stdin, `{"id": ..., "event": ...}`, and answers one line on the protocol channel (the process's
original stdout): `{"ok": true, "result": ...}` or `{"ok": false, "errorType", "errorMessage"}`.
Everything the function itself prints (Powertools' JSON logs, EMF metrics) goes to stderr, which
the stack shows with --verbose and drops otherwise. EOF on stdin ends the process, so a worker never outlives its stack.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO


class Context:
    """The LambdaContext a handler receives."""

    def __init__(self, name: str, memory: int, timeout: int, request_id: str) -> None:
        self.function_name = name
        self.function_version = "$LATEST"
        self.invoked_function_arn = f"arn:aws:lambda:us-east-1:123456789012:function:{name}"
        self.memory_limit_in_mb = memory
        self.aws_request_id = request_id
        self.log_group_name = f"/aws/lambda/{name}"
        self.log_stream_name = "local"
        self._deadline = time.monotonic() + timeout

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def load_handler(code_dir: Path, handler: str, name: str) -> Callable[[Any, Any], Any]:
    """`app.lambda_handler` from `code_dir`, the module loaded by path under a unique name."""
    module_path, _, function = handler.rpartition(".")
    sys.path.insert(0, str(code_dir))  # Lambda's /var/task comes first
    spec = importlib.util.spec_from_file_location(
        f"{name.lower()}_{module_path.replace('.', '_')}", code_dir / (module_path.replace(".", "/") + ".py")
    )
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {handler} from {code_dir}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    found: Callable[[Any, Any], Any] = getattr(module, function)
    return found


def _reply(channel: TextIO, message: dict[str, Any]) -> None:
    channel.write(json.dumps(message, default=str) + "\n")
    channel.flush()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--code-dir", type=Path, required=True)
    parser.add_argument("--handler", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--timeout", type=int, default=3)
    parser.add_argument("--memory", type=int, default=128)
    args = parser.parse_args()

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the stack's to handle
    channel = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)  # the function's own output goes to stderr

    started = time.perf_counter()
    try:
        handler = load_handler(args.code_dir, args.handler, args.name)
    except Exception as exc:
        traceback.print_exc()
        _reply(channel, {"ready": False, "errorType": type(exc).__name__, "errorMessage": str(exc)[:500]})
        return
    _reply(channel, {"ready": True, "ms": round((time.perf_counter() - started) * 1000, 1)})

    for line in sys.stdin:
        request = json.loads(line)
        context = Context(args.name, args.memory, args.timeout, request["id"])
        began = time.perf_counter()
        try:
            result = handler(request["event"], context)
            message: dict[str, Any] = {"ok": True, "result": result}
        except Exception as exc:
            traceback.print_exc()
            message = {"ok": False, "errorType": type(exc).__name__, "errorMessage": str(exc)[:500]}
        message["ms"] = round((time.perf_counter() - began) * 1000, 2)
        try:
            _reply(channel, message)
        except TypeError as exc:
            _reply(channel, {"ok": False, "errorType": "Runtime.MarshalError", "errorMessage": str(exc)[:200]})


if __name__ == "__main__":
    main()
