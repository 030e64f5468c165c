"""scripts/audit_deps.py: what `make lint` audits, and when it fails, warns or passes (no network here:
pip-audit's run and PyPI's project pages are stand-ins)."""

from __future__ import annotations

import importlib.util
import json
import sys
from importlib.metadata import PackageNotFoundError
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.helpers import ROOT


def load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("audit_deps_script", ROOT / "scripts" / "audit_deps.py")
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


audit_deps = load()
GHSA = {"id": "GHSA-aaaa-bbbb-cccc", "aliases": ["CVE-2026-1"], "fix_versions": ["2.0"], "description": "x"}


class FakeDist:
    def __init__(self, version: str, requires: list[str] | None = None) -> None:
        self.version = version
        self.requires = requires


def finder(dists: dict[str, FakeDist]) -> Any:
    def find(name: str) -> FakeDist:
        try:
            return dists[name.lower().replace("_", "-")]
        except KeyError:
            raise PackageNotFoundError(name) from None

    return find


def pip_audit_run(returncode: int, dependencies: list[dict[str, Any]] | None, stderr: str = "") -> Any:
    report = None if dependencies is None else {"dependencies": dependencies, "fixes": []}
    return lambda pins: audit_deps.PipAuditRun(returncode, report, stderr)


def pages(**by_name: Any) -> Any:
    return lambda name: by_name[name]


def outcome(result: Any, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    status = audit_deps.report(result)
    captured = capsys.readouterr()
    return status, captured.out + captured.err


def test_the_closure_follows_requirements_extras_and_markers_only() -> None:
    Requirement = audit_deps.Requirement
    dists = {
        "app-dep": FakeDist("1.0", ["shared>=1", 'optional ; extra == "fast"', 'old-python ; python_version < "3.0"']),
        "with-extra": FakeDist("2.0", ['optional ; extra == "fast"']),
        "shared": FakeDist("3.0"),
        "optional": FakeDist("4.0", ["SHARED"]),
        "unrelated": FakeDist("9.9"),
    }
    pins, missing = audit_deps.closure(
        [Requirement("app-dep"), Requirement("with-extra[fast]"), Requirement("not-installed")], finder(dists)
    )
    assert pins == {"app-dep": "1.0", "optional": "4.0", "shared": "3.0", "with-extra": "2.0"}
    assert missing == ["not-installed"]


def test_the_audit_covers_the_runtime_dependencies_and_the_dev_extra() -> None:
    names = {r.name for r in audit_deps.declared()}
    assert {"aws-lambda-powertools", "redis", "pytest", "pip-audit", "bandit", "schemathesis"} <= names


def test_a_vulnerability_pip_audit_finds_fails_the_lint(capsys: pytest.CaptureFixture[str]) -> None:
    result = audit_deps.audit(
        {"lib": "1.0"}, pip_audit_run(1, [{"name": "lib", "version": "1.0", "vulns": [GHSA]}]), pages()
    )
    status, text = outcome(result, capsys)
    assert status == 1
    assert "lib==1.0: GHSA-aaaa-bbbb-cccc, CVE-2026-1 (fixed in 2.0)" in text


def test_no_vulnerability_passes_and_says_what_was_audited(capsys: pytest.CaptureFixture[str]) -> None:
    result = audit_deps.audit(
        {"lib": "1.0"}, pip_audit_run(0, [{"name": "lib", "version": "1.0", "vulns": []}]), pages()
    )
    status, text = outcome(result, capsys)
    assert (status, "1 of 1 packages" in text, "0 known vulnerabilities" in text) == (0, True, True)


def test_a_package_pip_audit_skips_is_audited_at_pypis_latest_release(capsys: pytest.CaptureFixture[str]) -> None:
    """PyPI's per-release JSON answers 404 on this network: pip-audit skips every package."""
    skipped = [{"name": "lib", "skip_reason": "Dependency not found on PyPI and could not be audited: lib (1.0)"}]
    vulnerable = audit_deps.ProjectPage(200, "1.0", ({"id": "PYSEC-2026-9", "aliases": [GHSA["id"]], "fixed_in": []},))
    result = audit_deps.audit({"lib": "1.0"}, pip_audit_run(0, skipped), pages(lib=vulnerable))
    status, text = outcome(result, capsys)
    assert (status, result.by_project_api) == (1, {"lib"})
    assert "lib==1.0: PYSEC-2026-9, GHSA-aaaa-bbbb-cccc (no fixed version)" in text


def test_a_vulnerability_listed_under_each_databases_id_counts_once(capsys: pytest.CaptureFixture[str]) -> None:
    skipped = [{"name": "lib", "skip_reason": "not found"}]
    twice = (
        {"id": "PYSEC-2026-9", "aliases": ["GHSA-aaaa-bbbb-cccc"]},
        {"id": "GHSA-aaaa-bbbb-cccc", "aliases": ["PYSEC-2026-9"]},
        {"id": "GHSA-dddd-eeee-ffff", "aliases": [], "withdrawn": "2026-01-01T00:00:00Z"},
    )
    result = audit_deps.audit(
        {"lib": "1.0"}, pip_audit_run(0, skipped), pages(lib=audit_deps.ProjectPage(200, "1.0", twice))
    )
    status, text = outcome(result, capsys)
    assert (status, "1 known vulnerabilities" in text, text.count("lib==1.0:")) == (1, True, 1)


def test_a_version_that_is_not_the_latest_is_listed_as_not_audited(capsys: pytest.CaptureFixture[str]) -> None:
    skipped = [{"name": "lib", "skip_reason": "not found"}, {"name": "other", "skip_reason": "not found"}]
    result = audit_deps.audit(
        {"lib": "1.0", "other": "3.0"},
        pip_audit_run(0, skipped),
        pages(lib=audit_deps.ProjectPage(200, "2.0"), other=audit_deps.ProjectPage(200, "3.0")),
    )
    status, text = outcome(result, capsys)
    assert (status, result.not_audited) == (0, {"lib": "not PyPI's latest (2.0)"})
    assert "not audited" in text
    assert "lib==1.0" in text


def test_pypi_out_of_reach_warns_loudly_and_passes(capsys: pytest.CaptureFixture[str]) -> None:
    stderr = "requests.exceptions.ConnectionError: HTTPSConnectionPool(host='pypi.org', port=443): Max retries exceeded"
    result = audit_deps.audit({"lib": "1.0"}, pip_audit_run(1, None, stderr), pages())
    status, text = outcome(result, capsys)
    assert status == 0
    assert "WARNING: dependency audit NOT DONE: pip-audit could not reach PyPI" in text


def test_pypis_project_pages_out_of_reach_too_warns_loudly_and_passes(capsys: pytest.CaptureFixture[str]) -> None:
    skipped = [{"name": "lib", "skip_reason": "not found"}]
    result = audit_deps.audit({"lib": "1.0"}, pip_audit_run(0, skipped), pages(lib=audit_deps.ProjectPage(0)))
    status, text = outcome(result, capsys)
    assert (status, "dependency audit NOT DONE: PyPI did not answer any lookup" in text) == (0, True)


def test_pip_audit_failing_for_another_reason_fails_the_lint(capsys: pytest.CaptureFixture[str]) -> None:
    result = audit_deps.audit({"lib": "1.0"}, pip_audit_run(2, None, "error: unrecognized arguments: --bogus"), pages())
    status, text = outcome(result, capsys)
    assert (status, "unrecognized arguments" in text) == (1, True)


def test_an_ignored_vulnerability_passes_and_is_counted(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(audit_deps, "IGNORED_VULNS", {"CVE-2026-1": "no fix yet; not reachable from leadflow"})
    result = audit_deps.audit(
        {"lib": "1.0"}, pip_audit_run(1, [{"name": "lib", "version": "1.0", "vulns": [GHSA]}]), pages()
    )
    status, text = outcome(result, capsys)
    assert (status, "1 ignored (IGNORED_VULNS)" in text) == (0, True)


def test_pip_audit_is_asked_about_the_pins_only_without_resolving(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    seen: dict[str, Any] = {}

    def fake_run(command: list[str], **kwargs: Any) -> Any:
        requirements = command[command.index("-r") + 1]
        output = command[command.index("-o") + 1]
        seen["command"], seen["requirements"] = command, Path(requirements).read_text()
        with open(output, "w") as out:
            json.dump({"dependencies": [], "fixes": []}, out)
        return type("Done", (), {"returncode": 0, "stderr": ""})()

    monkeypatch.setattr(audit_deps.subprocess, "run", fake_run)
    run = audit_deps.run_pip_audit({"a": "1.0", "b": "2.0"})
    assert run.report == {"dependencies": [], "fixes": []}
    assert seen["requirements"] == "a==1.0\nb==2.0\n"
    assert {"--no-deps", "--disable-pip", "pypi"} <= set(seen["command"])
