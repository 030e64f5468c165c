"""local/server.py: the HTTP front of the local stack, without the stack (no routes, no workers)."""

from __future__ import annotations

import io
import json
from typing import Any

from starlette.testclient import TestClient

from local.runtime import Log
from local.server import Frontend, asgi_app


def frontend(openapi: Any = None) -> Frontend:
    return Frontend([], {}, Log(io.StringIO(), color=False), lambda: {"status": "ok"}, openapi)


def test_a_path_holding_a_newline_reaches_the_frontend() -> None:
    """Found by fuzzing: Starlette's {path:path} router answered such a path itself, in plain text."""
    client = TestClient(asgi_app(frontend(), 3000))

    reply = client.get("/leads/a%0Ab/messages")

    assert (reply.status_code, reply.headers["content-type"], reply.json()) == (
        404,
        "application/json",
        {"message": "Not Found"},
    )


def test_any_method_reaches_the_frontend() -> None:
    reply = TestClient(asgi_app(frontend(), 3000)).request("TRACE", "/_local/health")

    assert (reply.status_code, reply.json()) == (404, {"message": "Not Found"})


def test_the_openapi_document_is_served_as_made() -> None:
    document = json.dumps({"openapi": "3.1.0"}).encode()
    reply = TestClient(asgi_app(frontend(lambda: document), 3000)).get("/_local/openapi.json")

    assert (reply.status_code, reply.headers["content-type"], reply.content) == (200, "application/json", document)


def test_a_document_that_could_not_be_made_is_a_503_saying_why() -> None:
    reply = TestClient(asgi_app(frontend(lambda: "scripts/openapi.py failed: boom"), 3000)).get("/_local/openapi.json")

    assert (reply.status_code, reply.json()) == (
        503,
        {"message": "no OpenAPI document: scripts/openapi.py failed: boom"},
    )
