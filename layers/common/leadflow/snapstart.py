"""Lambda SnapStart: work for the snapshot of an initialized environment, and for nothing else.

With SnapStart on (template.yaml's SnapStart parameter; published versions only), Lambda runs a
function's init once per version, snapshots it, and resumes new environments from the snapshot. A
hook registered here runs only then, before the snapshot, so that imports a first invocation would
otherwise pay (boto3, the batch and idempotency utilities, the Claude SDK) are in the snapshot,
while without SnapStart init stays as small as it is. A hook imports modules and nothing else: no
connection, no credentials, no randomness, since every environment resumed from one snapshot shares
its state. `snapshot_restore_py` ships with Lambda's Python runtimes; elsewhere no snapshot is taken.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable


def preload(modules: Iterable[str]) -> None:
    for module in modules:
        importlib.import_module(module)


def before_snapshot(modules: Callable[[], Iterable[str]]) -> bool:
    """Import `modules()` before a SnapStart snapshot; False where no snapshot can be taken."""
    try:
        from snapshot_restore_py import register_before_snapshot
    except ImportError:
        return False
    register_before_snapshot(lambda: preload(modules()))
    return True
