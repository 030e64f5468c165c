"""The layer's build (layers/common/Makefile, which `sam build` runs) ships checked-hash bytecode:
Lambda's /opt is read-only, so without a valid .pyc each cold start compiles every module it imports
from source. (The `packages` step downloads arm64 wheels: it is run by `make build`, not here.)"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.helpers import ROOT

DOS_EPOCH = 315_532_800  # 1980-01-01: what a zip may date every file


def test_the_layers_code_is_shipped_with_bytecode_that_validates_whatever_the_files_dates(tmp_path: Path) -> None:
    # Given leadflow built into a layer as `sam build` does it, every file then dated 1980 and read-only
    layer = ROOT / "layers" / "common"
    build = ["make", "-C", str(layer), "code", f"ARTIFACTS_DIR={tmp_path}", f"PYTHON={sys.executable}"]
    subprocess.run(build, check=True, capture_output=True)
    target = tmp_path / "python"
    sources = sorted(target.rglob("*.py"))
    assert len(sources) == len(list((layer / "leadflow").rglob("*.py")))
    for path in [*target.rglob("*"), target]:
        os.utime(path, (DOS_EPOCH, DOS_EPOCH))
    for path in sorted(target.rglob("*"), reverse=True):
        path.chmod(0o555 if path.is_dir() else 0o444)

    # When a fresh interpreter imports leadflow's modules from it, saying where each code object came from
    modules = ["leadflow.lead_state", "leadflow.intake.service", "leadflow.writeback"]
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(target)}
    run = [sys.executable, "-v", "-c", f"import {', '.join(modules)}"]
    verbose = subprocess.run(run, env=env, capture_output=True, text=True, check=True).stderr

    # Then every leadflow module came from its .pyc, none was compiled from source
    loaded = [line for line in verbose.splitlines() if line.startswith("# code object from") and str(target) in line]
    assert loaded
    assert all(".pyc" in line for line in loaded), [line for line in loaded if ".pyc" not in line]
