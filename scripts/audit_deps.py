"""`make lint`'s dependency audit: pip-audit over leadflow's own dependencies, as installed.

What is audited: the dependencies pyproject.toml declares (runtime and the dev extra) and everything
they require, at the versions installed in this environment, and nothing else the environment holds.
They go to pip-audit as a pinned requirements list (`--no-deps --disable-pip`: no resolution, no
downloads) against PyPI's vulnerability data (`-s pypi`).

Where PyPI's per-release JSON API answers 404 (it does on this project's machines, which reach
pypi.org's project pages only), pip-audit skips the package and would still report "no known
vulnerabilities". So each package it skips is looked up on the project endpoint, which carries the
vulnerabilities of the latest release: when the installed version is that release, those are its
vulnerabilities; when it is not, the package is listed as not audited.

Exit status: 1 for any known vulnerability not in IGNORED_VULNS (or pip-audit failing for a reason
other than the network); 0 otherwise. When the vulnerability service cannot be reached, the audit is
not done: a loud warning says so and the status stays 0, so that a network blip does not block a
landing; a finding never passes.

    python scripts/audit_deps.py
"""

from __future__ import annotations

import json
import re
import subprocess  # nosec B404 # runs pip-audit
import sys
import tempfile
import tomllib
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib.metadata import Distribution, PackageNotFoundError, distribution
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
PROJECT_JSON = "https://pypi.org/pypi/{name}/json"
EXTRAS = ("dev",)
# Known vulnerabilities accepted on purpose: id (PYSEC-/GHSA-/CVE-) -> why, and until when.
IGNORED_VULNS: dict[str, str] = {}
# pip-audit (requests) failing to reach its service, as its stderr says it.
NETWORK_FAILURE = re.compile(
    r"requests\.exceptions\.|ConnectionError|ConnectTimeout|ReadTimeout|Could not connect|Max retries exceeded|"
    r"NameResolutionError|Temporary failure in name resolution|Network is unreachable|Connection refused|"
    r"RemoteDisconnected|ServiceError|SSLError",
)


@dataclass(frozen=True, slots=True)
class Vulnerability:
    package: str
    version: str
    id: str
    aliases: tuple[str, ...]
    fixed_in: tuple[str, ...]

    def ignored(self) -> bool:
        return bool({self.id, *self.aliases} & set(IGNORED_VULNS))

    def line(self) -> str:
        fix = f"fixed in {', '.join(self.fixed_in)}" if self.fixed_in else "no fixed version"
        names = ", ".join((self.id, *self.aliases))
        return f"  {self.package}=={self.version}: {names} ({fix})"


@dataclass
class Audit:
    pins: dict[str, str]
    by_pip_audit: set[str] = field(default_factory=set)
    by_project_api: set[str] = field(default_factory=set)
    not_audited: dict[str, str] = field(default_factory=dict)  # package -> why
    vulnerabilities: list[Vulnerability] = field(default_factory=list)
    unreachable: str | None = None  # why the service could not be asked at all
    failure: str | None = None  # pip-audit failed for another reason


# ---------------------------------------------------------------- what to audit
def declared(pyproject: Path = ROOT / "pyproject.toml", extras: Iterable[str] = EXTRAS) -> list[Requirement]:
    project = tomllib.loads(pyproject.read_text())["project"]
    raw = list(project.get("dependencies", []))
    for extra in extras:
        raw += project.get("optional-dependencies", {}).get(extra, [])
    return [Requirement(r) for r in raw]


def _applies(requirement: Requirement, extras: set[str]) -> bool:
    marker = requirement.marker
    return marker is None or any(marker.evaluate({"extra": extra}) for extra in {"", *extras})


def closure(
    requirements: Iterable[Requirement], find: Callable[[str], Distribution] = distribution
) -> tuple[dict[str, str], list[str]]:
    """The installed version of every package the requirements need, transitively; and those needed
    but not installed."""
    pins: dict[str, str] = {}
    missing: set[str] = set()
    seen: dict[str, set[str]] = {}
    todo = [(r.name, set(r.extras)) for r in requirements if _applies(r, set())]
    while todo:
        name, extras = todo.pop()
        key = canonicalize_name(name)
        if key in seen and extras <= seen[key]:
            continue
        seen[key] = seen.get(key, set()) | extras
        try:
            dist = find(name)
        except PackageNotFoundError:
            missing.add(key)
            continue
        pins[key] = dist.version
        for raw in dist.requires or []:
            requirement = Requirement(raw)
            if _applies(requirement, extras):
                todo.append((requirement.name, set(requirement.extras)))
    return dict(sorted(pins.items())), sorted(missing)


# ---------------------------------------------------------------- asking
@dataclass(frozen=True, slots=True)
class PipAuditRun:
    returncode: int
    report: dict[str, Any] | None  # its JSON output, when it wrote one
    stderr: str


def run_pip_audit(pins: Mapping[str, str]) -> PipAuditRun:
    with tempfile.TemporaryDirectory() as tmp:
        requirements, output = Path(tmp, "requirements.txt"), Path(tmp, "audit.json")
        requirements.write_text("".join(f"{name}=={version}\n" for name, version in pins.items()))
        command = [sys.executable, "-m", "pip_audit", "-r", str(requirements), "--no-deps", "--disable-pip"]
        command += ["-s", "pypi", "-f", "json", "-o", str(output), "--progress-spinner", "off"]
        for vuln in IGNORED_VULNS:
            command += ["--ignore-vuln", vuln]
        done = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603  # nosec B603 # our argv
        report = json.loads(output.read_text()) if output.exists() and output.stat().st_size else None
    return PipAuditRun(done.returncode, report, done.stderr)


@dataclass(frozen=True, slots=True)
class ProjectPage:
    status: int  # HTTP status; 0: no answer (network)
    latest: str | None = None
    vulnerabilities: tuple[dict[str, Any], ...] = ()


def fetch_project(name: str) -> ProjectPage:
    """PyPI's project JSON: its latest version and that version's vulnerabilities."""
    import httpx

    try:
        reply = httpx.get(PROJECT_JSON.format(name=name), timeout=15, follow_redirects=True)
    except httpx.TransportError:
        return ProjectPage(0)
    if reply.status_code != 200:
        return ProjectPage(reply.status_code)
    data = reply.json()
    return ProjectPage(200, str(data["info"]["version"]), tuple(data.get("vulnerabilities") or ()))


# ---------------------------------------------------------------- the audit
def _vulnerability(package: str, version: str, entry: Mapping[str, Any]) -> Vulnerability:
    return Vulnerability(
        package,
        version,
        str(entry["id"]),
        tuple(str(a) for a in entry.get("aliases") or ()),
        tuple(str(f) for f in entry.get("fixed_in") or entry.get("fix_versions") or ()),
    )


def audit(
    pins: dict[str, str],
    pip_audit: Callable[[Mapping[str, str]], PipAuditRun] = run_pip_audit,
    project: Callable[[str], ProjectPage] = fetch_project,
) -> Audit:
    result = Audit(pins)
    run = pip_audit(pins)
    if run.report is None:
        if NETWORK_FAILURE.search(run.stderr):
            result.unreachable = f"pip-audit could not reach PyPI: {run.stderr.strip().splitlines()[-1][:300]}"
        else:
            result.failure = f"pip-audit exited {run.returncode} without a report:\n{run.stderr[-2000:]}"
        return result
    skipped = []
    for dep in run.report.get("dependencies", []):
        name = canonicalize_name(dep["name"])
        if "skip_reason" in dep:
            skipped.append(name)
            continue
        result.by_pip_audit.add(name)
        result.vulnerabilities += [_vulnerability(name, dep["version"], v) for v in dep.get("vulns", [])]
    with ThreadPoolExecutor(max_workers=8) as pool:
        pages = dict(zip(skipped, pool.map(project, skipped), strict=True))
    for name, page in pages.items():
        version = pins[name]
        if page.status == 0 or page.status >= 500:
            result.not_audited[name] = "PyPI did not answer"
        elif page.status != 200:
            result.not_audited[name] = f"PyPI answered {page.status}"
        elif page.latest != version:
            result.not_audited[name] = f"not PyPI's latest ({page.latest})"
        else:
            result.by_project_api.add(name)
            live = [v for v in page.vulnerabilities if not v.get("withdrawn")]
            result.vulnerabilities += [_vulnerability(name, version, v) for v in live]
    if (
        pages
        and all(why == "PyPI did not answer" for why in result.not_audited.values())
        and not (result.by_project_api or result.by_pip_audit)
    ):
        result.unreachable = "PyPI did not answer any lookup"
    return result


def _distinct(vulnerabilities: Iterable[Vulnerability]) -> list[Vulnerability]:
    """One entry per vulnerability of a package: PyPI lists one under each database's id (PYSEC-, GHSA-)."""
    seen: dict[str, set[str]] = {}
    out = []
    for vuln in vulnerabilities:
        ids = {vuln.id, *vuln.aliases}
        if not ids & seen.setdefault(vuln.package, set()):
            out.append(vuln)
        seen[vuln.package] |= ids
    return out


def report(result: Audit) -> int:
    """Print what was audited and found; the exit status (see the module's docstring)."""
    if result.failure:
        print(f"dependency audit FAILED: {result.failure}", file=sys.stderr)
        return 1
    if result.unreachable:
        bar = "!" * 100
        print(f"{bar}\n!! WARNING: dependency audit NOT DONE: {result.unreachable}", file=sys.stderr)
        print(f"!! {len(result.pins)} packages unaudited; lint passes only because it is the network.", file=sys.stderr)
        print(bar, file=sys.stderr)
        return 0
    distinct = _distinct(result.vulnerabilities)
    found = [v for v in distinct if not v.ignored()]
    ignored = len(distinct) - len(found)
    audited = len(result.by_pip_audit) + len(result.by_project_api)
    print(
        f"dependency audit: {audited} of {len(result.pins)} packages of leadflow[{','.join(EXTRAS)}] audited "
        f"({len(result.by_pip_audit)} by pip-audit, {len(result.by_project_api)} at PyPI's latest release "
        f"through its project API); {len(found)} known vulnerabilities"
        + (f", {ignored} ignored (IGNORED_VULNS)" if ignored else "")
    )
    if result.not_audited:
        listed = ", ".join(f"{name}=={result.pins[name]} ({why})" for name, why in sorted(result.not_audited.items()))
        print(f"WARNING: not audited, no vulnerability data for these versions here: {listed}", file=sys.stderr)
    if found:
        print("KNOWN VULNERABILITIES:\n" + "\n".join(v.line() for v in found), file=sys.stderr)
        return 1
    return 0


def main() -> int:
    pins, missing = closure(declared())
    pins.pop("leadflow", None)
    if missing:
        print(f"WARNING: required but not installed, not audited: {', '.join(missing)}", file=sys.stderr)
    return report(audit(pins))


if __name__ == "__main__":
    raise SystemExit(main())
