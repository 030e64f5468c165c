"""A GHL stand-in for the marketplace app, for the demo and the tests: it issues tokens for
authorization codes, refreshes them (a refresh token works once), hands agency installs a location's
token, expires tokens on command, and, with a live token only, takes messages, custom fields, tags
and tasks, keeping what a GHL contact would show. It records every request."""

from __future__ import annotations

import itertools
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

CLIENT_ID, CLIENT_SECRET = "app-client", "app-secret"  # the stand-in app's OAuth client
TOKEN_TYPE = "Bearer"  # noqa: S105  # nosec B105 # OAuth's token_type, not a token


class GhlStandIn:
    def __init__(self, location_id: str = "loc-2", refresh_delay: float = 0.0) -> None:
        self.location_id = location_id
        self.refresh_delay = refresh_delay  # widens the race between concurrent refreshes
        self.codes: dict[str, dict[str, Any]] = {}
        self.live: set[str] = set()  # access tokens GHL accepts
        self.refreshable: set[str] = set()  # refresh tokens not yet used
        self.requests: list[dict[str, Any]] = []
        self.contacts: dict[
            str, dict[str, Any]
        ] = {}  # id -> {"customFields": {id: value}, "tags": [...], "tasks": [...]}
        self.custom_fields: dict[str, list[dict[str, Any]]] = {}  # location -> its custom fields
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length).decode() if length else ""
                form = {k: v[0] for k, v in parse_qs(raw).items()}
                try:
                    data = json.loads(raw) if raw.startswith(("{", "[")) else None
                except ValueError:
                    data = None
                request: dict[str, Any] = {
                    "method": self.command, "path": self.path.split("?")[0], "headers": dict(self.headers),
                    "form": form, "json": data, "body": raw, "at": time.time(),
                }  # fmt: skip
                with fake._lock:
                    fake.requests.append(request)
                status, body = fake.answer(self.command, str(request["path"]), dict(self.headers), form, data)
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = _any

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    # What the test arranges
    def add_code(self, code: str, *, location_id: str | None = None, company_id: str = "comp-1", **grant: Any) -> None:
        user_type = grant.pop("userType", "Location")
        self.codes[code] = (
            {"userType": user_type, "companyId": company_id}
            | ({"locationId": location_id or self.location_id} if user_type == "Location" else {})
            | grant
        )

    def expire(self, token: str) -> None:
        self.live.discard(token)

    def calls(self, path: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["path"] == path]

    # GHL's side
    def _issue(self, grant: dict[str, Any], *, refresh: bool = True) -> dict[str, Any]:
        n = next(self._ids)
        access, refresh_token = f"at-{n}-secret", f"rt-{n}-secret"
        self.live.add(access)
        body = {"access_token": access, "token_type": TOKEN_TYPE, "expires_in": 86399, "scope": "x"} | grant
        if refresh:
            self.refreshable.add(refresh_token)
            body["refresh_token"] = refresh_token
        return body

    def answer(
        self, method: str, path: str, headers: dict[str, str], form: dict[str, str], data: Any = None
    ) -> tuple[int, dict[str, Any]]:
        if path == "/oauth/token":
            return self._token(form)
        token = headers.get("Authorization", "").removeprefix("Bearer ")
        if token not in self.live:
            return 401, {"message": "Invalid JWT"}
        parts = path.strip("/").split("/")
        with self._lock:
            if path == "/oauth/locationToken":
                return 200, self._issue({"userType": "Location", "locationId": form.get("locationId")}, refresh=False)
            if path == "/conversations/messages":
                return 200, {"messageId": f"m-{next(self._ids)}", "conversationId": "c-1"}
            if parts[0] == "locations" and len(parts) == 3 and parts[2] == "customFields":
                return self._custom_fields(method, parts[1], data or {})
            if parts[0] == "contacts" and len(parts) >= 2:
                return self._contact(method, parts[1], parts[2] if len(parts) > 2 else "", data or {})
            if parts[0] == "locations" and len(parts) == 2:
                return 200, {"location": {"id": parts[1], "timezone": "America/New_York"}}
        return 404, {"message": "not found"}

    def _token(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if form.get("client_id") != CLIENT_ID or form.get("client_secret") != CLIENT_SECRET:
            return 401, {"error": "invalid_client"}
        if form.get("grant_type") == "authorization_code":
            grant = self.codes.pop(form.get("code", ""), None)
            return (200, self._issue(grant)) if grant else (400, {"error": "invalid_grant"})
        if form.get("grant_type") == "refresh_token":
            time.sleep(self.refresh_delay)
            with self._lock:
                token = form.get("refresh_token", "")
                if token not in self.refreshable:
                    return 400, {"error": "invalid_grant", "error_description": "refresh token already used"}
                self.refreshable.discard(token)
            return 200, self._issue({"userType": "Location", "locationId": self.location_id})
        return 400, {"error": "unsupported_grant_type"}

    def _custom_fields(self, method: str, location_id: str, data: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        fields = self.custom_fields.setdefault(location_id, [])
        if method == "GET":
            return 200, {"customFields": fields}
        field = {"id": f"cf-{next(self._ids)}", "name": data.get("name"), "dataType": data.get("dataType")}
        field["fieldKey"] = f"contact.{data.get('name')}"
        fields.append(field)
        return 201, {"customField": field}

    def _contact(self, method: str, contact_id: str, what: str, data: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        contact = self.contacts.setdefault(contact_id, {"customFields": {}, "tags": [], "tasks": []})
        if what == "tags":
            tags = [str(t) for t in data.get("tags", [])]
            if method == "DELETE":
                contact["tags"] = [t for t in contact["tags"] if t not in tags]
            else:
                contact["tags"] += [t for t in tags if t not in contact["tags"]]
            return (200 if method == "DELETE" else 201), {"tags": contact["tags"]}
        if what == "tasks":
            task = {"id": f"task-{next(self._ids)}"} | data
            contact["tasks"].append(task)
            return 201, {"task": task}
        if method == "PUT":
            for item in data.get("customFields", []):
                contact["customFields"][item.get("id") or item.get("key")] = item.get("field_value", item.get("value"))
            return 200, {"succeeded": True, "contact": {"id": contact_id}}
        return 200, {"contact": {"id": contact_id}}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
