"""The HTTP side of the local stack, on 127.0.0.1: the template's HTTP API routes (payload 2.0
events, behind a JWT check standing in for the API Gateway authorizer) and the Function URL (payload
2.0 events, no JWT: the webhook checks its own signatures), served by uvicorn + Starlette.

Route selection follows API Gateway: the most specific route wins (literal segments before
{params}, {params} before {proxy+}); a path no route matches goes to the Function URL when there is
exactly one (several are mounted under /<function>/); else 404 {"message": "Not Found"}.

The stack's own paths, under /_local/ (no JWT): health (what runs where) and openapi.json (the HTTP
API's OpenAPI document, as `make openapi` writes it).
"""

from __future__ import annotations

import base64
import json
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from local.runtime import Invocation, Log, Worker
from local.template import ACCOUNT

TEXT_TYPES = re.compile(r"^(text/|application/(json|xml|javascript|x-www-form-urlencoded)|.*\+(json|xml)\b)", re.I)
API_ID = "local"


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str
    worker: Worker
    jwt: JwtCheck | None  # None: no authorizer on the route

    @property
    def route_key(self) -> str:
        return "$default" if self.path == "$default" else f"{self.method} {self.path}"

    def match(self, method: str, path: str) -> tuple[tuple[int, ...], dict[str, str]] | None:
        """(specificity, path parameters) when this route serves the request, else None."""
        if self.method not in ("ANY", method):
            return None
        if self.path == "$default":
            return (-1,), {}
        want = [s for s in self.path.split("/") if s]
        have = [s for s in path.split("/") if s]
        params: dict[str, str] = {}
        rank: list[int] = []
        for i, segment in enumerate(want):
            greedy = re.fullmatch(r"\{(\w+)\+\}", segment)
            if greedy:
                if i != len(want) - 1 or len(have) <= i:
                    return None
                params[greedy[1]] = "/".join(have[i:])
                rank.append(0)
                return (*rank, 1 if self.method == method else 0), params
            if i >= len(have):
                return None
            param = re.fullmatch(r"\{(\w+)\}", segment)
            if param:
                params[param[1]] = have[i]
                rank.append(1)
            elif segment == have[i]:
                rank.append(2)
            else:
                return None
        if len(have) != len(want):
            return None
        return (*rank, 1 if self.method == method else 0), params


@dataclass(frozen=True, slots=True)
class JwtCheck:
    """An API Gateway JWT authorizer: RS256 signature by the local key, issuer, audience, expiry."""

    public_pem: bytes
    issuer: str
    audience: list[str]

    def claims(self, authorization: str | None) -> dict[str, Any] | str:
        """The token's claims, or why it is refused."""
        import jwt

        if not authorization:
            return "no Authorization header"
        token = authorization.split(" ", 1)[1] if authorization.lower().startswith("bearer ") else authorization
        try:
            claims: dict[str, Any] = jwt.decode(
                token.strip(),
                self.public_pem,
                algorithms=["RS256"],
                audience=self.audience,
                issuer=self.issuer,
                options={"require": ["exp", "iss"]},
            )
        except jwt.PyJWTError as exc:
            return f"{type(exc).__name__}: {exc}"
        return claims


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str
    query: str
    headers: list[tuple[str, str]]
    body: bytes
    client: str
    scheme: str = "http"
    port: int = 3000


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


def _json_reply(status: int, body: Any, headers: list[tuple[str, str]] | None = None) -> Reply:
    return Reply(status, [("content-type", "application/json"), *(headers or [])], json.dumps(body).encode())


def _joined_headers(headers: list[tuple[str, str]]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in headers:
        key = name.lower()
        out[key] = f"{out[key]},{value}" if key in out else value
    return out


def _query_parameters(query: str) -> dict[str, str] | None:
    out: dict[str, str] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        out[key] = f"{out[key]},{value}" if key in out else value
    return out or None


def _body(request: Request, headers: dict[str, str]) -> tuple[str | None, bool]:
    if not request.body:
        return None, False
    if TEXT_TYPES.match(headers.get("content-type", "")):
        try:
            return request.body.decode("utf-8"), False
        except UnicodeDecodeError:
            pass
    return base64.b64encode(request.body).decode(), True


def _context(request: Request, route_key: str, api_id: str, headers: dict[str, str]) -> dict[str, Any]:
    now = datetime.now(UTC)
    host = headers.get("host", f"127.0.0.1:{request.port}")
    return {
        "accountId": ACCOUNT,
        "apiId": api_id,
        "domainName": host.split(":")[0],
        "domainPrefix": host.split(".")[0].split(":")[0],
        "http": {
            "method": request.method,
            "path": request.path,
            "protocol": "HTTP/1.1",
            "sourceIp": request.client,
            "userAgent": headers.get("user-agent", ""),
        },
        "requestId": uuid.uuid4().hex[:16] + "=",
        "routeKey": route_key,
        "stage": "$default",
        "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
        "timeEpoch": int(now.timestamp() * 1000),
    }


def build_event(
    request: Request, route_key: str, path_params: dict[str, str] | None, claims: dict[str, Any] | None, api_id: str
) -> dict[str, Any]:
    """A payload 2.0 event (HTTP API, or a Function URL with route key $default), as AWS builds it."""
    headers = _joined_headers(request.headers)
    cookies = [c.strip() for c in headers.pop("cookie", "").split(";") if c.strip()]
    headers.setdefault("x-forwarded-for", request.client)
    headers.setdefault("x-forwarded-proto", request.scheme)
    headers.setdefault("x-forwarded-port", str(request.port))
    body, encoded = _body(request, headers)
    context = _context(request, route_key, api_id, headers)
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": request.path,
        "rawQueryString": request.query,
        "headers": headers,
        "requestContext": context,
        "isBase64Encoded": encoded,
    }
    if cookies:
        event["cookies"] = cookies
    query = _query_parameters(request.query)
    if query:
        event["queryStringParameters"] = query
    if path_params:
        event["pathParameters"] = path_params
    if claims is not None:
        context["authorizer"] = {"jwt": {"claims": _claim_strings(claims), "scopes": _scopes(claims)}}
    else:
        context["accountId"] = "anonymous"
    if body is not None:
        event["body"] = body
    return event


def _claim_strings(claims: dict[str, Any]) -> dict[str, str]:
    """API Gateway hands JWT claims to the function as strings (lists as "[a b]")."""
    out = {}
    for key, value in claims.items():
        out[key] = f"[{' '.join(str(v) for v in value)}]" if isinstance(value, list) else str(value)
    return out


def _scopes(claims: dict[str, Any]) -> list[str] | None:
    scope = claims.get("scope") or claims.get("scp")
    if isinstance(scope, str):
        return scope.split()
    return [str(s) for s in scope] if isinstance(scope, list) else None


def to_reply(invocation: Invocation, error_status: int) -> Reply:
    """A payload 2.0 response (statusCode/headers/cookies/body/isBase64Encoded, or any JSON as the body)."""
    if not invocation.ok:
        if invocation.error and invocation.error.startswith("Task timed out"):
            return _json_reply(504, {"message": "Endpoint request timed out"})
        return _json_reply(error_status, {"message": "Internal Server Error"})
    result = invocation.result
    if not (isinstance(result, dict) and "statusCode" in result):
        return _json_reply(200, result)
    headers = [(str(k).lower(), str(v)) for k, v in (result.get("headers") or {}).items()]
    for name, values in (result.get("multiValueHeaders") or {}).items():
        headers += [(str(name).lower(), str(v)) for v in values]
    headers += [("set-cookie", str(c)) for c in result.get("cookies") or []]
    raw = result.get("body")
    body = b"" if raw is None else str(raw).encode()
    if result.get("isBase64Encoded") and raw:
        body = base64.b64decode(str(raw))
    if not any(name == "content-type" for name, _ in headers):
        headers.append(("content-type", "application/json"))
    return Reply(int(result["statusCode"]), headers, body)


class Frontend:
    """Turns requests into function invocations; thread-safe (each worker has its own lock)."""

    def __init__(
        self,
        routes: list[Route],
        function_urls: dict[str, Worker],
        log: Log,
        health: Callable[[], dict[str, Any]],
        openapi: Callable[[], bytes | str] | None = None,
    ) -> None:
        self.routes = routes
        self.function_urls = function_urls  # mount prefix ("" for the only one) -> worker
        self.log = log
        self.health = health
        self.openapi = openapi  # the document, or why it could not be made (str)

    def handle(self, request: Request) -> Reply:
        started = time.perf_counter()
        if request.path in ("/_local/health", "/_local/stack") and request.method == "GET":
            return _json_reply(200, self.health())
        if request.path == "/_local/openapi.json" and request.method == "GET" and self.openapi is not None:
            document = self.openapi()
            if isinstance(document, str):
                return _json_reply(503, {"message": f"no OpenAPI document: {document}"})
            return Reply(200, [("content-type", "application/json")], document)
        best: tuple[tuple[int, ...], Route, dict[str, str]] | None = None
        for route in self.routes:
            found = route.match(request.method, request.path)
            if found and (best is None or found[0] > best[0]):
                best = (found[0], route, found[1])
        if best is not None:
            return self._api(request, best[1], best[2], started)
        for prefix, worker in sorted(self.function_urls.items(), key=lambda item: -len(item[0])):
            if not prefix or request.path == prefix or request.path.startswith(prefix + "/"):
                inner = request.path[len(prefix) :] or "/"
                return self._url(request, worker, inner, started)
        self.log.invocation("http", f"{request.method} {request.path}", "404", _ms(started), "no route", "warn")
        return _json_reply(404, {"message": "Not Found"})

    def _api(self, request: Request, route: Route, params: dict[str, str], started: float) -> Reply:
        claims: dict[str, Any] | None = None
        if route.jwt is not None:
            checked = route.jwt.claims(_joined_headers(request.headers).get("authorization"))
            if isinstance(checked, str):
                self.log.invocation("authz", f"{request.method} {request.path}", "401", _ms(started), checked, "warn")
                return _json_reply(401, {"message": "Unauthorized"}, [("www-authenticate", "Bearer")])
            claims = checked
        event = build_event(request, route.route_key, params, claims, API_ID)
        invocation = route.worker.invoke(event)
        reply = to_reply(invocation, 500)
        self._log(route.worker, f"{request.method} {request.path}", invocation, reply)
        return reply

    def _url(self, request: Request, worker: Worker, path: str, started: float) -> Reply:
        inner = Request(
            request.method,
            path,
            request.query,
            request.headers,
            request.body,
            request.client,
            request.scheme,
            request.port,
        )
        event = build_event(inner, "$default", None, None, f"url-{worker.spec.short}")
        invocation = worker.invoke(event)
        reply = to_reply(invocation, 502)
        self._log(worker, f"{request.method} {request.path}", invocation, reply)
        return reply

    def _log(self, worker: Worker, source: str, invocation: Invocation, reply: Reply) -> None:
        detail = ""
        try:
            body = json.loads(reply.body) if reply.body else None
        except ValueError:
            body = None
        if isinstance(body, dict):
            if isinstance(body.get("status"), str):
                detail = body["status"]
            elif reply.status >= 400 and isinstance(body.get("message"), str):
                detail = body["message"][:100]
        if invocation.error:
            detail = invocation.error[:160]
        if invocation.cold_ms is not None:
            detail += f"{'; ' if detail else ''}cold start {invocation.cold_ms:.0f} ms"
        style = "ok" if reply.status < 400 else ("warn" if reply.status < 500 else "error")
        self.log.invocation(worker.spec.short, source, str(reply.status), invocation.ms, detail, style)


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def asgi_app(frontend: Frontend, port: int) -> Any:
    """A bare ASGI app: every path and method to the frontend, in a worker thread. No router in between:
    Starlette's `{path:path}` does not match a path holding a newline (%0A), which API Gateway passes on."""
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request as StarletteRequest
    from starlette.responses import Response

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":  # lifespan is off; nothing else is served
            return
        request = StarletteRequest(scope, receive)
        ours = Request(
            method=request.method,
            path=request.url.path,
            query=scope.get("query_string", b"").decode("latin-1"),
            headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]],
            body=await request.body(),
            client=request.client.host if request.client else "127.0.0.1",
            port=port,
        )
        reply = await run_in_threadpool(frontend.handle, ours)
        response = Response(content=reply.body, status_code=reply.status)
        response.raw_headers = [
            (k.encode("latin-1"), v.encode("latin-1")) for k, v in reply.headers if k != "content-length"
        ] + [(b"content-length", str(len(reply.body)).encode())]
        await response(scope, receive, send)

    return app
