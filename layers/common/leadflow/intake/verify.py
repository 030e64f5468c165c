"""Who sent this? Signature and token checks over the raw body bytes, before anything is parsed.

- GHL: Ed25519 in `X-GHL-Signature` (base64, over the raw body), checked first, with
  GHL_WEBHOOK_PUBLIC_KEY (PEM, or GHL's published base64 SPKI); the legacy RSA-SHA256 (PKCS#1 v1.5)
  `X-WH-Signature` only when GHL_WEBHOOK_RSA_PUBLIC_KEY is set. Both with `cryptography`.
- Website activity: Standard Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature`),
  with the `standardwebhooks` library, which also holds the 5-minute window.
- Workflow webhooks: `Authorization: Bearer <WORKFLOW_WEBHOOK_TOKEN>`, compared in constant time.

Every failure is a SignatureError (401); no secret configured is a failure too.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hmac
from collections.abc import Mapping

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

ED25519_HEADER = "x-ghl-signature"
RSA_HEADER = "x-wh-signature"


class SignatureError(Exception):
    """The request is not proven to come from its sender: 401."""


class KeyConfigError(ValueError):
    """A configured public key cannot be read."""


def _load_public_key(text: str) -> object:
    """A PEM public key, or a bare base64 SubjectPublicKeyInfo (GHL publishes its key that way)."""
    text = text.strip().replace("\\n", "\n")
    try:
        if text.startswith("-----BEGIN"):
            return serialization.load_pem_public_key(text.encode())
        return serialization.load_der_public_key(base64.b64decode(text, validate=False))
    except (ValueError, TypeError, UnsupportedAlgorithm, binascii.Error) as exc:
        raise KeyConfigError(f"cannot read public key: {exc}") from None


@functools.lru_cache(maxsize=4)
def ed25519_key(text: str) -> Ed25519PublicKey:
    key = _load_public_key(text)
    if not isinstance(key, Ed25519PublicKey):
        raise KeyConfigError("GHL_WEBHOOK_PUBLIC_KEY is not an Ed25519 public key")
    return key


@functools.lru_cache(maxsize=4)
def rsa_key(text: str) -> RSAPublicKey:
    key = _load_public_key(text)
    if not isinstance(key, RSAPublicKey):
        raise KeyConfigError("GHL_WEBHOOK_RSA_PUBLIC_KEY is not an RSA public key")
    return key


def _signature_bytes(value: str) -> bytes:
    try:
        return base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError("signature is not base64") from None


def verify_ghl(body: bytes, headers: Mapping[str, str], public_key: str, rsa_public_key: str | None) -> str:
    """Check GHL's signature over the raw body; returns which header proved it."""
    ed_signature = headers.get(ED25519_HEADER)
    if ed_signature:
        try:
            ed25519_key(public_key).verify(_signature_bytes(ed_signature), body)
        except KeyConfigError as exc:
            raise SignatureError(str(exc)) from None
        except InvalidSignature:
            raise SignatureError("X-GHL-Signature does not match the body") from None
        return ED25519_HEADER
    rsa_signature = headers.get(RSA_HEADER)
    if rsa_signature and rsa_public_key:
        try:
            rsa_key(rsa_public_key).verify(_signature_bytes(rsa_signature), body, padding.PKCS1v15(), hashes.SHA256())
        except KeyConfigError as exc:
            raise SignatureError(str(exc)) from None
        except InvalidSignature:
            raise SignatureError("X-WH-Signature does not match the body") from None
        return RSA_HEADER
    if rsa_signature:
        raise SignatureError("X-GHL-Signature missing (X-WH-Signature needs GHL_WEBHOOK_RSA_PUBLIC_KEY)")
    raise SignatureError("X-GHL-Signature missing")


def verify_standard(body: bytes, headers: Mapping[str, str], secret: str | None) -> str:
    """Standard Webhooks check (signature and 5-minute window); returns the verified `webhook-id`."""
    if not secret:
        raise SignatureError("WEBHOOK_SIGNING_SECRET is not configured")
    from standardwebhooks.webhooks import Webhook

    try:
        Webhook(secret).verify(body, dict(headers), json_parse=False)
    except Exception as exc:  # the library raises several types for bad input; every one is a 401
        raise SignatureError(f"webhook signature rejected: {type(exc).__name__}: {str(exc)[:80]}") from None
    return headers["webhook-id"]


def verify_bearer(headers: Mapping[str, str], token: str | None) -> None:
    if not token:
        raise SignatureError("WORKFLOW_WEBHOOK_TOKEN is not configured")
    scheme, _, given = headers.get("authorization", "").strip().partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
        raise SignatureError("bearer token missing or wrong")
