"""Print the OpenAPI document of leadflow's HTTP API (the score and send functions) as JSON.

Each function's `app.py` is loaded by path under a unique module name (four files are named
app.py); the `paths` and component schemas of every function whose app has a Powertools resolver
are merged into one document. A function without a resolver yet is left out.

What API Gateway adds in front of the functions is added here: the JWT authorizer on every route
(a bearer security scheme, and its 401 `{"message": "Unauthorized"}`). Component schemas that no
operation refers to (Powertools' own validation-error shapes, which the functions' error handlers
replace with `{"message": ...}`) are dropped.

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
SCHEMA_REF = "#/components/schemas/"
JWT_SCHEME = {
    "type": "http",
    "scheme": "bearer",
    "bearerFormat": "JWT",
    "description": "API Gateway's JWT authorizer (the stack's issuer and audience); locally, `make token`",
}
UNAUTHORIZED = {
    "description": "No token, or one the JWT authorizer refuses (API Gateway's reply)",
    "content": {"application/json": {"schema": {"$ref": f"{SCHEMA_REF}ErrorReply"}}},
}
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
    return _pruned(_with_authorizer(merged))


def _with_authorizer(document: dict[str, Any]) -> dict[str, Any]:
    document.setdefault("components", {})["securitySchemes"] = {"jwt": JWT_SCHEME}
    document["security"] = [{"jwt": []}]
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            responses["401"] = UNAUTHORIZED
            operation["responses"] = dict(sorted(responses.items()))
    return document


def _refs(value: Any) -> set[str]:
    """The component schemas a part of the document names."""
    if isinstance(value, dict):
        ref = value.get("$ref")
        found = {ref.removeprefix(SCHEMA_REF)} if isinstance(ref, str) and ref.startswith(SCHEMA_REF) else set()
        return found.union(*(_refs(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(_refs(v) for v in value))
    return set()


def _pruned(document: dict[str, Any]) -> dict[str, Any]:
    """The document without component schemas that no operation reaches."""
    schemas = document.get("components", {}).get("schemas", {})
    reached: set[str] = set()
    todo = _refs(document.get("paths", {}))
    while todo:
        name = todo.pop()
        if name in reached or name not in schemas:
            continue
        reached.add(name)
        todo |= _refs(schemas[name])
    if schemas:
        document["components"]["schemas"] = {name: schemas[name] for name in sorted(reached)}
    return document


def main() -> None:
    os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "leadflow")
    os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    print(json.dumps(document(), indent=2, sort_keys=False))


if __name__ == "__main__":
    main()
