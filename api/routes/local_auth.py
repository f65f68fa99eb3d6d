"""The local stack's JWKS document, served only when LOCAL_AUTH is on. Public, limited per IP."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends

from api.deps import limit_anonymous
from engine.security.local_keys import jwks, load_or_create_signing_key


def local_auth_router(data_dir: Path) -> APIRouter:
    """A router serving the public key that signs local development tokens (made at build)."""
    local_jwks = jwks(load_or_create_signing_key(data_dir))
    router = APIRouter()

    @router.get(
        "/auth/v1/.well-known/jwks.json",
        include_in_schema=False,
        dependencies=[Depends(limit_anonymous)],
    )
    def local_jwks_document() -> dict[str, Any]:
        """Local stack only: the public key that signs local development tokens."""
        return local_jwks

    return router
