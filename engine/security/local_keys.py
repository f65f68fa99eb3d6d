"""A local ES256 signing key standing in for Supabase Auth's, for local development only.

The local stack publishes `jwks(key)` where the API expects the project's JWKS and signs
access tokens shaped like Supabase's with `mint_access_token`, so the API verifies local
tokens exactly as it verifies real ones. Never use this key outside a developer's machine.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

#: Where the key lives under DATA_DIR.
KEY_RELATIVE_PATH = Path("keys") / "jwt-es256.pem"
AUDIENCE = "authenticated"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def public_jwk_members(public_key: ec.EllipticCurvePublicKey) -> dict[str, str]:
    """The required members of a P-256 public JWK (RFC 7518 section 6.2.1)."""
    numbers = public_key.public_numbers()
    return {
        "crv": "P-256",
        "kty": "EC",
        "x": _b64url(numbers.x.to_bytes(32, "big")),
        "y": _b64url(numbers.y.to_bytes(32, "big")),
    }


def jwk_thumbprint(members: dict[str, str]) -> str:
    """RFC 7638 thumbprint: SHA-256 of the required members, sorted, without whitespace."""
    canonical = json.dumps(members, sort_keys=True, separators=(",", ":")).encode()
    return _b64url(hashlib.sha256(canonical).digest())


@dataclass(frozen=True)
class LocalKey:
    """The local signing key, its key id (its thumbprint) and where it is stored."""

    private_key: ec.EllipticCurvePrivateKey
    kid: str
    path: Path

    def public_jwk(self) -> dict[str, Any]:
        """The public half as a JWK, with the members Supabase's JWKS entries carry."""
        return {
            **public_jwk_members(self.private_key.public_key()),
            "kid": self.kid,
            "alg": "ES256",
            "use": "sig",
            "key_ops": ["verify"],
            "ext": True,
        }


def _from_private_key(private_key: ec.EllipticCurvePrivateKey, path: Path) -> LocalKey:
    if not isinstance(private_key.curve, ec.SECP256R1):
        raise ValueError(f"{path} does not hold a P-256 key")
    kid = jwk_thumbprint(public_jwk_members(private_key.public_key()))
    return LocalKey(private_key=private_key, kid=kid, path=path)


def _load(path: Path) -> LocalKey:
    loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(loaded, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{path} does not hold an EC private key")
    return _from_private_key(loaded, path)


def load_or_create_signing_key(data_dir: Path) -> LocalKey:
    """Load DATA_DIR/keys/jwt-es256.pem, creating it (mode 0600) on first use.

    Creation writes a private temporary file and links it into place, so two processes
    starting together agree on one key and nobody reads a half-written file.
    """
    path = data_dir / KEY_RELATIVE_PATH
    if path.exists():
        return _load(path)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    private_key = ec.generate_private_key(ec.SECP256R1())
    pem = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
        try:
            os.link(tmp, path)
        except FileExistsError:
            # Another process won the race: use its key.
            return _load(path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return _from_private_key(private_key, path)


def jwks(key: LocalKey) -> dict[str, Any]:
    """The public JWKS document to serve at the issuer's /.well-known/jwks.json."""
    return {"keys": [key.public_jwk()]}


def access_token_claims(
    *,
    user_id: str,
    email: str | None,
    issuer: str,
    now: int,
    ttl_seconds: int = 3600,
    session_id: str | None = None,
) -> dict[str, Any]:
    """The claims of a Supabase Auth access token for an email user signed in at `now`."""
    return {
        "iss": issuer,
        "sub": user_id,
        "aud": AUDIENCE,
        "exp": now + ttl_seconds,
        "iat": now,
        "email": email or "",
        "phone": "",
        "app_metadata": {"provider": "email", "providers": ["email"]},
        "user_metadata": {},
        "role": "authenticated",
        "aal": "aal1",
        "amr": [{"method": "password", "timestamp": now}],
        "session_id": session_id or str(uuid.uuid4()),
        "is_anonymous": False,
    }


def mint_access_token(
    key: LocalKey,
    *,
    user_id: str,
    email: str | None,
    issuer: str,
    ttl_seconds: int = 3600,
    extra_claims: dict[str, Any] | None = None,
) -> str:
    """Sign an access token shaped like Supabase's; `extra_claims` add to or replace claims."""
    claims = access_token_claims(
        user_id=user_id, email=email, issuer=issuer, now=int(time.time()), ttl_seconds=ttl_seconds
    )
    claims.update(extra_claims or {})
    return jwt.encode(
        claims, key.private_key, algorithm="ES256", headers={"kid": key.kid, "typ": "JWT"}
    )
