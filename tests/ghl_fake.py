"""A GHL stand-in for the marketplace app: it issues tokens for authorization codes, refreshes them
(a refresh token works once), hands agency installs a location's token, expires tokens on command,
accepts messages only with a live token, and records every request."""

from __future__ import annotations

import itertools
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs


class FakeGhl:
    def __init__(self, location_id: str = "loc-2", refresh_delay: float = 0.0) -> None:
        self.location_id = location_id
        self.refresh_delay = refresh_delay  # widens the race between concurrent refreshes
        self.codes: dict[str, dict[str, Any]] = {}
        self.live: set[str] = set()  # access tokens GHL accepts
        self.refreshable: set[str] = set()  # refresh tokens not yet used
        self.requests: list[dict[str, Any]] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length).decode() if length else ""
                form = {k: v[0] for k, v in parse_qs(raw).items()}
                request = {"path": self.path, "headers": dict(self.headers), "form": form, "body": raw}
                with fake._lock:
                    fake.requests.append(request)
                status, body = fake.answer(self.path, dict(self.headers), form)
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

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
        body = {"access_token": access, "token_type": "Bearer", "expires_in": 86399, "scope": "x"} | grant
        if refresh:
            self.refreshable.add(refresh_token)
            body["refresh_token"] = refresh_token
        return body

    def answer(self, path: str, headers: dict[str, str], form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if path == "/oauth/token":
            if form.get("client_id") != "app-client" or form.get("client_secret") != "app-secret":
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
        token = headers.get("Authorization", "").removeprefix("Bearer ")
        if token not in self.live:
            return 401, {"message": "Invalid JWT"}
        if path == "/oauth/locationToken":
            return 200, self._issue({"userType": "Location", "locationId": form.get("locationId")}, refresh=False)
        if path == "/conversations/messages":
            return 200, {"messageId": f"m-{next(self._ids)}", "conversationId": "c-1"}
        return 404, {"message": "not found"}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
