"""Local development tokens: a user in auth.users and an access token signed with the local key."""

from __future__ import annotations

from engine.db.connection import shared_store
from engine.db.queries import load_sql
from engine.security.local_keys import load_or_create_signing_key, mint_access_token
from engine.settings import get_settings


def ensure_local_user(email: str) -> str:
    """The id of the local user with this email, created if missing."""
    store = shared_store()
    with store.pool.connection() as conn:
        row = conn.execute(load_sql("auth_user_upsert"), {"email": email}).fetchone()
    assert row is not None
    return str(row["id"])


def mint_local_token(email: str, *, ttl_seconds: int = 3600) -> str:
    """A Supabase-shaped access token for `email`, trusted only by a local stack."""
    settings = get_settings()
    user_id = ensure_local_user(email)
    key = load_or_create_signing_key(settings.data_dir)
    return mint_access_token(
        key, user_id=user_id, email=email, issuer=settings.jwt_issuer, ttl_seconds=ttl_seconds
    )
