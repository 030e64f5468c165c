"""The local stack's keys and secrets, made once and kept under `.local-stack/` (gitignored):

jwt-private.pem        RS256 key standing in for the HTTP API's JWT issuer (make token signs with it)
ghl-private.pem        Ed25519 key standing in for GHL's webhook key: the demo and the CLI sign GHL
                       webhooks with it; the webhook function gets its public half
secrets.json           the activity webhooks' Standard Webhooks secret (whsec_...) and the workflow token
stack.json             where the running stack listens (written at start, removed at stop)
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from local.template import ROOT

STATE_DIR = ROOT / ".local-stack"
ISSUER = "https://leadflow.local/"
AUDIENCE = "leadflow-local"


def _write_private(path: Path, data: bytes) -> None:
    """Write atomically with mode 0600, keeping an existing file (two stacks starting at once agree)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    try:
        os.link(tmp, path)  # fails if another process made it first: keep theirs
    except FileExistsError:
        pass
    finally:
        tmp.unlink()


@dataclass(frozen=True, slots=True)
class LocalKeys:
    state_dir: Path
    jwt_private_pem: bytes
    ghl_private_pem: bytes
    signing_secret: str  # whsec_...
    workflow_token: str

    @property
    def jwt_public_pem(self) -> bytes:
        from cryptography.hazmat.primitives import serialization

        key = serialization.load_pem_private_key(self.jwt_private_pem, password=None)
        return key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    @property
    def ghl_public_key(self) -> str:
        """The Ed25519 public key as base64 SPKI (the form GHL publishes its own key in)."""
        from cryptography.hazmat.primitives import serialization

        key = serialization.load_pem_private_key(self.ghl_private_pem, password=None)
        der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        return base64.b64encode(der).decode()

    @property
    def ghl_private_key_path(self) -> Path:
        return self.state_dir / "ghl-private.pem"

    def token(
        self, subject: str = "local-user", ttl: int = 12 * 3600, issuer: str = ISSUER, audience: str = AUDIENCE
    ) -> str:
        """A JWT the local HTTP API accepts, as a Cognito access token would carry it."""
        import jwt

        now = int(time.time())
        claims = {"iss": issuer, "aud": audience, "sub": subject, "scope": "leads", "iat": now, "exp": now + ttl}
        return jwt.encode(claims, self.jwt_private_pem, algorithm="RS256", headers={"kid": "local"})


def ensure(state_dir: Path = STATE_DIR) -> LocalKeys:
    """The keys under `state_dir`, made on first use."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

    state_dir.mkdir(parents=True, exist_ok=True)
    pem = serialization.Encoding.PEM
    pkcs8, plain = serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    jwt_path, ghl_path, secrets_path = (
        state_dir / "jwt-private.pem",
        state_dir / "ghl-private.pem",
        state_dir / "secrets.json",
    )
    if not jwt_path.exists():
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        _write_private(jwt_path, key.private_bytes(pem, pkcs8, plain))
    if not ghl_path.exists():
        _write_private(ghl_path, ed25519.Ed25519PrivateKey.generate().private_bytes(pem, pkcs8, plain))
    if not secrets_path.exists():
        values = {
            "WEBHOOK_SIGNING_SECRET": "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode(),
            "WORKFLOW_WEBHOOK_TOKEN": secrets.token_urlsafe(32),
        }
        _write_private(secrets_path, json.dumps(values, indent=2).encode())
    stored: dict[str, str] = json.loads(secrets_path.read_text())
    return LocalKeys(
        state_dir=state_dir,
        jwt_private_pem=jwt_path.read_bytes(),
        ghl_private_pem=ghl_path.read_bytes(),
        signing_secret=stored["WEBHOOK_SIGNING_SECRET"],
        workflow_token=stored["WORKFLOW_WEBHOOK_TOKEN"],
    )


def running(state_dir: Path = STATE_DIR) -> dict[str, Any] | None:
    """What a running stack wrote to `stack.json` (its URLs), or None."""
    path = state_dir / "stack.json"
    try:
        info: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return info
