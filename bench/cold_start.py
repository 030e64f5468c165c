"""Cold start: the init (module import) of each function's handler against its bare dependencies.

For each of the four functions, in fresh subprocesses laid out as Lambda runs them (`PYTHONPATH`
layers/common then functions/<name>, the working directory functions/<name>, LAMBDA_TASK_ROOT and the
template's Globals environment), it times `import app`, and in the same rounds the import of the
bare dependencies every function has anyway:

    from aws_lambda_powertools import Logger, Metrics, Tracer
    from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
    import boto3, cryptography, pydantic, redis

Runs are interleaved (one of each per round); each figure is the median of --repeat rounds, in wall
time and in the child's CPU time (the steadier of the two on a shared machine); the ratio is handler
/ bare. Two tracing settings: `off` (POWERTOOLS_TRACE_DISABLED=true: the template's default, the
tests and the local stack) and `sdk` (TracerSdk=true: Powertools' Tracer and the X-Ray SDK, as inside
Lambda when nothing disables them). The interpreter's own start-up is outside every figure.

Lambda has only the layer (layers/common/requirements.txt and what it pulls in) and the runtime's
boto3; this venv also holds the dev tools, some of which change what an import does (httpx imports
rich and click for its command line when they are installed). So the children are shown only the
distributions the layer would install (--all-installed shows them everything).

Then, per function, what its first invocations make lazily (boto3 and its clients, the Redis client
object, the batch and idempotency utilities, the Claude SDK; none connects), each timed alone after
the handler's import; and the send function's init with what its first queued job imports, which a
SnapStart snapshot could hold. Connections (Redis TLS, Secrets Manager, GHL) and a snapshot's restore
cannot be measured here: nothing here is Lambda, or in a VPC next to ElastiCache.

--as-shipped times each init once more from a copy of the layer and the functions without valid
bytecode (SAM's python3.12 build of the layer shipped no .pyc, and a zip may date files 1980, where
no timestamp .pyc validates: every module compiles on every cold start, /opt and /var/task being
read-only), and from the same copy with checked-hash .pyc (PEP 552), which validate whatever the
dates: the layer as layers/common/Makefile builds it now. The other figures have this venv's valid
bytecode.

    .venv/bin/python bench/cold_start.py [--repeat 7] [--tracing off|sdk|both] [--all-installed] [--imports-only]
        [--as-shipped]
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import py_compile
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FUNCTIONS = ("webhook", "score", "monitor", "send")
BARE = (
    "from aws_lambda_powertools import Logger, Metrics, Tracer\n"
    "from aws_lambda_powertools.event_handler import APIGatewayHttpResolver\n"
    "import boto3, cryptography, pydantic, redis\n"
)
RUNTIME_PROVIDED = ("boto3",)  # the Lambda Python runtime ships boto3 and botocore
NEVER_HIDDEN = frozenset({"leadflow", "app"})
SAM_ZIP_TIME = 315_532_800  # 1980-01-01T00:00:00Z, the date a zip entry without one reads as

# What first invocations make lazily, by function; each step is timed alone after `import app`.
FIRST_USE = {
    "webhook": ("settings", "redis", "sqs", "secrets", "replay path"),
    "score": ("settings", "redis"),
    "monitor": ("settings", "redis", "sqs"),
    "send": ("settings", "redis", "sqs", "secrets", "ghl http", "queue path", "claude sdk"),
}
STEPS = {
    "settings": "from leadflow.config import settings; settings()",
    "redis": "from leadflow.redis_client import cache; cache()",  # the client object: no connection
    "sqs": "from leadflow.jobs import sqs; sqs()",  # boto3 and its SQS client
    "secrets": "from leadflow.config import _secrets; _secrets()",  # Powertools' Secrets Manager provider
    "ghl http": "from leadflow.ghl import http; http()",
    "replay path": "app.processor()",  # the batch utility
    "queue path": "app.processor(); app._once()",  # the batch and idempotency utilities
    "claude sdk": "import anthropic",
}

# What the send function's first queued job imports, which a SnapStart snapshot could hold.
SNAPSHOT_IMPORTS = (
    "boto3",
    "aws_lambda_powertools.utilities.batch",
    "aws_lambda_powertools.utilities.idempotency",
    "aws_lambda_powertools.utilities.idempotency.persistence.cache",
    "aws_lambda_powertools.utilities.parameters",
    "anthropic",  # with a Claude key
)

# Runs in the child: hide what Lambda would not have, then time `body` alone.
CHILD = """\
import sys, time
class _Hide:
    names = frozenset({hidden!r})
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in self.names:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None
sys.meta_path.insert(0, _Hide())
{setup}
start, cpu = time.perf_counter(), time.process_time()
{body}
print(time.perf_counter() - start, time.process_time() - cpu, len(sys.modules))
"""


def layer_distributions() -> set[str]:
    """Canonical names of the distributions the layer's requirements.txt installs (with extras, by
    their markers), plus the runtime's boto3: the closure over the installed metadata."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    lines = (ROOT / "layers" / "common" / "requirements.txt").read_text().splitlines()
    pending = [Requirement(line) for line in lines if line.strip() and not line.lstrip().startswith("#")]
    pending += [Requirement(name) for name in RUNTIME_PROVIDED]
    done: dict[str, set[str]] = {}
    while pending:
        requirement = pending.pop()
        name = canonicalize_name(requirement.name)
        extras = set(requirement.extras)
        if name in done and extras <= done[name]:
            continue
        done.setdefault(name, set()).update(extras)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue  # not installed here: nothing of it can be imported anyway
        for line in requires:
            sub = Requirement(line)
            if sub.marker is None or any(sub.marker.evaluate({"extra": e}) for e in {"", *done[name]}):
                pending.append(sub)
    return set(done)


def hidden_modules() -> list[str]:
    """Top-level modules of the installed distributions outside the layer."""
    from packaging.utils import canonicalize_name

    keep = layer_distributions()
    hidden = {
        module
        for module, dists in metadata.packages_distributions().items()
        if not any(canonicalize_name(d) in keep for d in dists) and module not in NEVER_HIDDEN
    }
    return sorted(m for m in hidden if re.fullmatch(r"[A-Za-z_]\w*", m))


def child_env(function: str, tracing: str) -> dict[str, str]:
    """A Lambda-like environment: the template's Globals, the runtime's variables, no live Redis."""
    task_root = ROOT / "functions" / function
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": f"{ROOT / 'layers' / 'common'}:{task_root}",
        "LAMBDA_TASK_ROOT": str(task_root),
        "AWS_LAMBDA_FUNCTION_NAME": f"leadflow-{function}",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.12",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "POWERTOOLS_SERVICE_NAME": "leadflow",
        "POWERTOOLS_METRICS_NAMESPACE": "leadflow",
        "POWERTOOLS_LOG_LEVEL": "INFO",
        "POWERTOOLS_TRACER_CAPTURE_RESPONSE": "false",
        "REDIS_URL": "redis://127.0.0.1:1/0",  # nothing listens: an init that connects fails loudly
        "GHL_LOCATION_ID": "loc-bench",
        "FOLLOWUP_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/leadflow-followups",
        "INTAKE_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/leadflow-intake",
    }
    if tracing == "off":
        env["POWERTOOLS_TRACE_DISABLED"] = "true"
    return env


def run_child(
    function: str, tracing: str, setup: str, body: str, hidden: list[str], **extra_env: str
) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds, modules loaded) of `body` in a fresh interpreter."""
    code = CHILD.format(hidden=hidden, setup=setup, body=body)
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT / "functions" / function,
        env=child_env(function, tracing) | extra_env,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        sys.exit(f"bench: {function} ({tracing}) failed:\n{out.stderr[-3000:]}")
    wall, cpu, modules = out.stdout.split()[-3:]
    return float(wall), float(cpu), int(modules)


Runs = dict[str, dict[str, list[tuple[float, float, int]]]]


def measure_imports(tracings: list[str], repeat: int, hidden: list[str]) -> Runs:
    """Runs by tracing setting and target ('bare' or a function), one of each per round."""
    runs: Runs = {t: {} for t in tracings}
    for _ in range(repeat):
        for tracing in tracings:
            for target in ("bare", *FUNCTIONS):
                body = BARE if target == "bare" else "import app\n"
                # The bare imports run in functions/webhook's layout: they do not depend on it.
                run = run_child(target if target != "bare" else "webhook", tracing, "", body, hidden)
                runs[tracing].setdefault(target, []).append(run)
    for tracing in tracings:
        print(f"\ninit (import) time, tracing {tracing}: median of {repeat} fresh processes; ratio = handler / bare")
        print(f"  {'':8} {'wall':>8} {'(min':>8} {'max)':>8} {'cpu':>8} {'modules':>8} {'ratio wall':>11} {'cpu':>5}")
        bare_wall = statistics.median(r[0] for r in runs[tracing]["bare"])
        bare_cpu = statistics.median(r[1] for r in runs[tracing]["bare"])
        for target in ("bare", *FUNCTIONS):
            walls = [r[0] for r in runs[tracing][target]]
            wall, cpu = statistics.median(walls), statistics.median(r[1] for r in runs[tracing][target])
            ratios = "" if target == "bare" else f"{wall / bare_wall:11.2f} {cpu / bare_cpu:5.2f}"
            print(
                f"  {target:8} {wall:7.3f}s {min(walls):7.3f}s {max(walls):7.3f}s {cpu:7.3f}s"
                f" {runs[tracing][target][-1][2]:8d} {ratios}"
            )
    return runs


def measure_first_use(repeat: int, hidden: list[str]) -> None:
    """What each function's first invocations make lazily, after its handler's import (tracing off)."""
    print(f"\nmade lazily by first invocations, each after the handler's import: median wall/cpu ms of {repeat}")
    for function in FUNCTIONS:
        figures = []
        for step in FIRST_USE[function]:
            runs = [run_child(function, "off", "import app", STEPS[step], hidden) for _ in range(repeat)]
            wall = statistics.median(r[0] for r in runs) * 1000
            cpu = statistics.median(r[1] for r in runs) * 1000
            figures.append(f"{step} {wall:.0f}/{cpu:.0f}")
        print(f"  {function:8} " + ", ".join(figures))


def measure_snapshot(repeat: int, hidden: list[str]) -> None:
    """The send function's init without and with what a SnapStart snapshot could hold besides: what its
    first queued job imports (boto3, the batch and idempotency utilities, the Claude SDK)."""
    preload = f"import importlib\nfor name in {SNAPSHOT_IMPORTS!r}:\n    importlib.import_module(name)\n"
    bodies = {"init": "import app\n", "init + a first job's imports": "import app\n" + preload}
    runs: dict[str, list[tuple[float, float, int]]] = {name: [] for name in bodies}
    for _ in range(repeat):
        for name, body in bodies.items():
            runs[name].append(run_child("send", "off", "", body, hidden))
    print(f"\nSnapStart, send function (tracing off): median of {repeat}")
    for name, measured in runs.items():
        wall, cpu = statistics.median(r[0] for r in measured), statistics.median(r[1] for r in measured)
        print(f"  {name:29} wall {wall:6.3f}s  cpu {cpu:6.3f}s  modules {measured[-1][2]}")


def ship(dest: Path) -> None:
    """The layer and the functions' code laid out as Lambda has them (/opt/python, /var/task), source
    files only, every file dated 1980-01-01 as a SAM zip's entries leave them (they carry no time)."""
    from packaging.utils import canonicalize_name

    python, keep = dest / "python", layer_distributions()
    for dist in metadata.distributions():
        if canonicalize_name(dist.metadata["Name"]) not in keep:
            continue
        for file in dist.files or []:
            source = Path(str(dist.locate_file(file)))
            if "__pycache__" in file.parts or file.suffix == ".pyc" or ".." in file.parts or not source.is_file():
                continue
            (python / file).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, python / file)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "layers" / "common" / "leadflow", python / "leadflow", ignore=ignore)
    shutil.copytree(ROOT / "functions", dest / "functions", ignore=ignore)
    for shipped in dest.rglob("*"):
        os.utime(shipped, (SAM_ZIP_TIME, SAM_ZIP_TIME))


def measure_bytecode(repeat: int) -> None:
    """Init as shipped, no bytecode that validates (a timestamp .pyc never matches a 1980 date: every
    module compiles on every cold start), against the same tree with checked-hash .pyc (PEP 552),
    which validate by the source's hash whatever its date. Runs with -S: only that tree is importable."""
    with tempfile.TemporaryDirectory() as tmp:
        trees = {"source only": Path(tmp) / "source", "checked-hash .pyc": Path(tmp) / "hashed"}
        ship(trees["source only"])
        shutil.copytree(trees["source only"], trees["checked-hash .pyc"])
        mode = py_compile.PycInvalidationMode.CHECKED_HASH
        compileall.compile_dir(trees["checked-hash .pyc"], quiet=1, invalidation_mode=mode, workers=0)
        print(f"\ninit as shipped (tracing off): median wall/cpu of {repeat}")
        for function in FUNCTIONS:
            figures = []
            for name, tree in trees.items():
                env = child_env(function, "off") | {
                    "PYTHONPATH": f"{tree / 'python'}:{tree / 'functions' / function}",
                    "PYTHONDONTWRITEBYTECODE": "1",
                }
                code = CHILD.format(hidden=[], setup="", body="import app")
                runs = []
                for _ in range(repeat):
                    out = subprocess.run(
                        [sys.executable, "-S", "-c", code], cwd=tree / "functions" / function, env=env,
                        capture_output=True, text=True, check=False,
                    )  # fmt: skip
                    if out.returncode != 0:
                        sys.exit(f"bench: {function} as shipped failed:\n{out.stderr[-3000:]}")
                    runs.append([float(x) for x in out.stdout.split()[-3:-1]])
                wall, cpu = statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)
                figures.append(f"{name} {wall:.3f}/{cpu:.3f} s")
            print(f"  {function:8} " + ", ".join(figures))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--tracing", choices=("off", "sdk", "both"), default="both")
    parser.add_argument("--all-installed", action="store_true", help="do not hide what the layer would not install")
    parser.add_argument("--imports-only", action="store_true", help="only the init tables")
    parser.add_argument("--json", type=Path, help="also write the raw seconds here")
    parser.add_argument("--as-shipped", action="store_true", help="also init from source only vs checked-hash .pyc")
    args = parser.parse_args()

    hidden = [] if args.all_installed else hidden_modules()
    print(f"python {sys.version.split()[0]}; {len(hidden)} top-level modules of dev-only distributions hidden")
    tracings = ["off", "sdk"] if args.tracing == "both" else [args.tracing]
    runs = measure_imports(tracings, args.repeat, hidden)
    if args.json:
        args.json.write_text(json.dumps(runs, indent=1))
    if not args.imports_only:
        measure_first_use(args.repeat, hidden)
        measure_snapshot(args.repeat, hidden)
    if args.as_shipped:
        measure_bytecode(args.repeat)


if __name__ == "__main__":
    main()
