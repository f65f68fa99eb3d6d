"""Local development tokens: a user in auth.users and an access token signed with the local key."""

from __future__ import annotations

import os
from pathlib import Path

from engine.db.connection import shared_store
from engine.db.queries import load_sql
from engine.security.local_keys import load_or_create_signing_key, mint_access_token
from engine.settings import Settings, get_settings

#: Where a local stack records the token issuer its API accepts (its own URL + /auth/v1).
ISSUER_FILE = "local-issuer.txt"


def record_issuer(data_dir: Path, issuer: str) -> None:
    """Note the issuer the stack of `data_dir` accepts, for `supaflow token` in other shells."""
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / ISSUER_FILE).write_text(issuer + "\n")


def token_issuer(settings: Settings) -> str:
    """The `iss` of local tokens: SUPABASE_URL's issuer when that is set, else the one the
    data folder's stack recorded (`supaflow up` points its API at itself), else the default."""
    recorded = settings.data_dir / ISSUER_FILE
    if "SUPABASE_URL" not in os.environ and recorded.is_file():
        return recorded.read_text().strip()
    return settings.jwt_issuer


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
        key, user_id=user_id, email=email, issuer=token_issuer(settings), ttl_seconds=ttl_seconds
    )
