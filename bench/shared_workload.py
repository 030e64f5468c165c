"""The common scoring workload, `../shared/bench/workload.py`: it lives beside the repository (on the
development machines and in CI), not in it, so that figures compare with other scorers on exactly
the same leads. A clone without it gets a plain message and a non-zero exit status, not a traceback."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

PATH = Path(__file__).resolve().parent.parent.parent / "shared" / "bench" / "workload.py"


def load() -> ModuleType:
    if not PATH.is_file():
        sys.exit(
            f"bench: the common workload is missing: expected {PATH}\n"
            "It sits beside the repository (../shared/bench/workload.py) on the development machines; "
            "copy it there to run this bench. `make test` and `make demo` do not need it."
        )
    spec = importlib.util.spec_from_file_location("workload", PATH)
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
