"""Print the OpenAPI document of leadflow's HTTP API (the score and send functions) as JSON.

Each function's `app.py` is loaded by path under a unique module name (four files are named
app.py); the `paths` and component schemas of every function whose app has a Powertools resolver
are merged into one document. A function without a resolver yet is left out.

    python scripts/openapi.py > openapi.json
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HTTP_FUNCTIONS = ("score", "send")
TITLE = "leadflow HTTP API"
DESCRIPTION = "Behavioural lead scoring and follow-up for GoHighLevel (API Gateway HTTP API, JWT on every route)."


def load_app(function: str) -> Any:
    """functions/<function>/app.py as module `openapi_<function>_app` (apart from the tests' modules)."""
    name = f"openapi_{function}_app"
    spec = importlib.util.spec_from_file_location(name, ROOT / "functions" / function / "app.py")
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load functions/{function}/app.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def resolver_of(module: Any) -> Any | None:
    resolver = getattr(module, "app", None)
    return resolver if callable(getattr(resolver, "get_openapi_schema", None)) else None


def document(functions: tuple[str, ...] = HTTP_FUNCTIONS) -> dict[str, Any]:
    """The merged OpenAPI document of the given functions' resolvers."""
    sys.path.insert(0, str(ROOT / "layers" / "common"))
    merged: dict[str, Any] | None = None
    for function in functions:
        resolver = resolver_of(load_app(function))
        if resolver is None:
            continue
        part = json.loads(resolver.get_openapi_json_schema(title=TITLE, description=DESCRIPTION))
        if merged is None:
            merged = part
            continue
        paths = merged.setdefault("paths", {})
        for path, operations in part.get("paths", {}).items():
            paths.setdefault(path, {}).update(operations)
        schemas = part.get("components", {}).get("schemas", {})
        merged.setdefault("components", {}).setdefault("schemas", {}).update(schemas)
    if merged is None:
        raise SystemExit("no HTTP function has a resolver")
    return merged


def main() -> None:
    os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "leadflow")
    os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    print(json.dumps(document(), indent=2, sort_keys=False))


if __name__ == "__main__":
    main()
