"""Helpers that mint real JWTs for tests: ES256/RS256 keys with their JWKS entries, Supabase-
shaped claims, HS256 tokens signed with any secret bytes, and unsigned (alg=none) tokens.

Nothing here is a mock: every token is a genuine compact JWS that PyJWT or Supabase would
produce, or a deliberately hostile one an attacker could send.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

#: Where Supabase publishes a project's JWKS, relative to SUPABASE_URL.
JWKS_PATH = "/auth/v1/.well-known/jwks.json"


def b64url(data: bytes) -> str:
    """Base64url without padding, as JWS uses."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _segment(obj: dict[str, Any]) -> str:
    return b64url(json.dumps(obj, separators=(",", ":")).encode())


@dataclass(frozen=True)
class SigningKey:
    """An asymmetric key pair used to sign test tokens, named by `kid` in the JWKS."""

    kid: str
    alg: str
    private_key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

    def public_jwk(self) -> dict[str, Any]:
        """The public JWK as a JWKS endpoint would list it."""
        public = self.private_key.public_key()
        if isinstance(public, ec.EllipticCurvePublicKey):
            jwk: dict[str, Any] = ECAlgorithm.to_jwk(public, as_dict=True)
        else:
            jwk = RSAAlgorithm.to_jwk(public, as_dict=True)
        return {**jwk, "kid": self.kid, "alg": self.alg, "use": "sig", "key_ops": ["verify"]}

    def public_pem(self) -> bytes:
        """The public key as SubjectPublicKeyInfo PEM (what a key-confusion attacker uses)."""
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def sign(self, claims: dict[str, Any], *, headers: dict[str, Any] | None = None) -> str:
        """A token over `claims` signed with this key; `headers` add to or replace kid/typ."""
        return jwt.encode(
            claims,
            self.private_key,
            algorithm=self.alg,
            headers={"kid": self.kid, "typ": "JWT", **(headers or {})},
        )


def new_es256_key(kid: str | None = None) -> SigningKey:
    """A fresh P-256 key."""
    return SigningKey(
        kid or f"es-{uuid.uuid4().hex[:8]}", "ES256", ec.generate_private_key(ec.SECP256R1())
    )


def new_rs256_key(kid: str | None = None) -> SigningKey:
    """A fresh 2048-bit RSA key."""
    return SigningKey(
        kid or f"rs-{uuid.uuid4().hex[:8]}",
        "RS256",
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
    )


def jwks_document(*keys: SigningKey) -> dict[str, Any]:
    """The JWKS a Supabase project publishes for `keys`."""
    return {"keys": [key.public_jwk() for key in keys]}


def supabase_claims(
    *,
    issuer: str,
    user_id: str | None = None,
    email: str | None = "user@example.com",
    ttl_seconds: int = 3600,
    now: int | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """Claims of a Supabase access token for a signed-in email user.

    `overrides` replace claims; an override of None removes that claim.
    """
    issued = int(time.time()) if now is None else now
    claims: dict[str, Any] = {
        "iss": issuer,
        "sub": user_id or str(uuid.uuid4()),
        "aud": "authenticated",
        "exp": issued + ttl_seconds,
        "iat": issued,
        "email": email or "",
        "phone": "",
        "app_metadata": {"provider": "email", "providers": ["email"]},
        "user_metadata": {},
        "role": "authenticated",
        "aal": "aal1",
        "amr": [{"method": "password", "timestamp": issued}],
        "session_id": str(uuid.uuid4()),
        "is_anonymous": False,
    }
    for name, value in overrides.items():
        if value is None:
            claims.pop(name, None)
        else:
            claims[name] = value
    return claims


def sign_hs256(
    claims: dict[str, Any], secret: str | bytes, *, headers: dict[str, Any] | None = None
) -> str:
    """An HS256 token over `claims` with any secret bytes at all.

    Written by hand because PyJWT refuses PEM-looking HMAC secrets, and a test of
    key confusion needs exactly such a token.
    """
    key = secret.encode() if isinstance(secret, str) else secret
    signing_input = (
        f"{_segment({'alg': 'HS256', 'typ': 'JWT', **(headers or {})})}.{_segment(claims)}"
    )
    signature = hmac.new(key, signing_input.encode("ascii"), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


def unsigned_token(claims: dict[str, Any], *, headers: dict[str, Any] | None = None) -> str:
    """An `alg: none` token: no signature at all."""
    return f"{_segment({'alg': 'none', 'typ': 'JWT', **(headers or {})})}.{_segment(claims)}."


def bearer(token: str) -> dict[str, str]:
    """The Authorization header carrying `token`."""
    return {"Authorization": f"Bearer {token}"}


class JwksEndpoint:
    """A Supabase-style JWKS endpoint served by a real HTTP server; counts its fetches."""

    def __init__(self, server: HTTPServer) -> None:
        self.server = server
        self.base_url = server.url_for("/").rstrip("/")
        self.issuer = self.base_url + "/auth/v1"
        self._document: dict[str, Any] = {"keys": []}
        self._lock = threading.Lock()
        self.fetches = 0
        server.expect_request(JWKS_PATH, method="GET").respond_with_handler(self._handle)

    def publish(self, *keys: SigningKey | dict[str, Any]) -> None:
        """Serve these keys from now on (SigningKeys or raw JWK dicts)."""
        jwks = [k.public_jwk() if isinstance(k, SigningKey) else k for k in keys]
        with self._lock:
            self._document = {"keys": jwks}

    def _handle(self, request: Request) -> Response:
        with self._lock:
            self.fetches += 1
            body = json.dumps(self._document)
        return Response(body, status=200, content_type="application/json")
