"""get_many of 100 keys (one MGET, one round trip) against 100 sequential gets, in the same run,
against a redis-server of the bench's own on a free port (started and stopped here).

Goal: get_many 20x faster or more. Each figure is the median of many repetitions.
"""

from __future__ import annotations

import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from leadflow.redis_client import Cache

KEYS = 100
REPEATS = 200


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def redis_server() -> Iterator[str]:
    binary = shutil.which("redis-server")
    if not binary:
        sys.exit("redis-server is not installed: run `make setup` (or apt-get install redis-server)")
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="leadflow-bench-")
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", workdir]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


def median_seconds(run: Callable[[], object]) -> float:
    for _ in range(10):  # warm the connection and the interpreter
        run()
    timings = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        run()
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


def main() -> None:
    with redis_server() as url:
        cache = Cache(url)
        keys = [f"lf:bench:{i}" for i in range(KEYS)]
        values = {key: {"lead_id": key, "likelihood_score": 71.5, "signals": ["pricing_tool_usage"]} for key in keys}
        cache.set_many(values)
        assert cache.get_many(keys) == values
        assert [cache.get(key) for key in keys] == list(values.values())

        batched = median_seconds(lambda: cache.get_many(keys))
        sequential = median_seconds(lambda: [cache.get(key) for key in keys])
        cache.close()
    ratio = sequential / batched
    print(f"redis-server {url.split('//')[1].split('/')[0]}, {KEYS} keys of JSON, median of {REPEATS} runs")
    print(f"get_many({KEYS} keys), one round trip: {batched * 1e3:8.3f} ms")
    print(f"{KEYS} sequential gets:               {sequential * 1e3:8.3f} ms")
    print(f"get_many is x{ratio:.1f} faster (goal x20: {'met' if ratio >= 20 else 'MISSED'})")


if __name__ == "__main__":
    main()
