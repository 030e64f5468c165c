"""A user's clone has no `../shared` beside it: the suite must need nothing outside the repository.

The guard copies the repository's files (without the venv and caches) into an empty temporary
folder and collects the whole suite there with this venv's Python. A test module that imports
anything from beside the repository fails to collect, and so fails this test.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.helpers import ROOT

# What a working copy holds that a fresh clone does not (the .gitignore's entries, and .git).
NOT_IN_A_CLONE = shutil.ignore_patterns(
    ".git", ".venv", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".hypothesis", ".aws-sam",
    ".local-stack", "*.egg-info", "build", "dist",
)  # fmt: skip


def test_the_suite_collects_in_a_copy_of_the_repository_with_nothing_beside_it(tmp_path: Path) -> None:
    # Given a copy of the repository alone in an empty folder
    copy = tmp_path / "leadflow"
    shutil.copytree(ROOT, copy, ignore=NOT_IN_A_CLONE)
    assert not (tmp_path / "shared").exists()
    # When the suite is collected there
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "-p", "no:xdist"],
        check=False,
        cwd=copy,
        capture_output=True,
        text=True,
        timeout=300,
    )
    # Then every module collects: nothing is imported from outside the repository
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert re.fullmatch(r"\d+ tests collected in .*", output.strip().splitlines()[-1]), output[-4000:]
