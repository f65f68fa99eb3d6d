"""Runtime configuration, read from environment variables (and an optional `.env`).

Secrets are never stored here by value in code: each one is read from the environment
variable that names it, and `Settings.__repr__` hides them.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """Every knob the engine reads. Names are the environment variable names."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False)

    database_url: str = Field(
        default="",
        description="PostgreSQL URL (Supabase: the direct or pooler connection string). "
        "Empty means the embedded local server in DATA_DIR.",
    )
    data_dir: Path = Field(
        default=PROJECT_ROOT / ".data",
        description="Folder for the embedded PostgreSQL, Prefect home, local storage and keys.",
    )
    supabase_url: str = Field(
        default="http://127.0.0.1:54321",
        description="Supabase project URL; JWT issuer is {SUPABASE_URL}/auth/v1.",
    )
    supabase_jwt_secret: SecretStr | None = Field(
        default=None, description="Legacy HS256 JWT secret; when unset only JWKS keys verify."
    )
    supabase_service_role_key: SecretStr | None = Field(
        default=None, description="Service key for Storage and Edge Function calls."
    )
    supabase_jwks_url: str | None = Field(
        default=None,
        description="Override of {SUPABASE_URL}/auth/v1/.well-known/jwks.json.",
    )
    storage_backend: str = Field(
        default="local", description="'local' (a folder) or 'supabase' (Supabase Storage)."
    )
    local_storage_dir: Path | None = Field(
        default=None, description="Folder for the local storage backend (default DATA_DIR/storage)."
    )
    http_allowlist: str = Field(
        default="",
        description="Comma-separated hosts, IPs or CIDRs that outbound HTTP may reach even "
        "though they are private or loopback (e.g. '127.0.0.1,10.0.0.0/8').",
    )
    api_max_body_bytes: int = Field(default=1024 * 1024, description="Largest request body.")
    rate_limits: str = Field(
        default="start=60/minute;read=600/minute;anon=30/minute",
        description="Per-endpoint-group limits, 'group=limit;...' in `limits` notation.",
    )
    redis_url: str | None = Field(default=None, description="Rate-limit storage; memory if unset.")
    metrics_token: SecretStr | None = Field(
        default=None, description="Bearer token required by GET /metrics when set."
    )
    prefect_deployment: str = Field(
        default="run-workflow/run-workflow", description="Deployment that runs one job."
    )
    db_pool_min: int = Field(default=1)
    db_pool_max: int = Field(default=10)
    state_history_limit: int = Field(
        default=100, description="How many transitions jobs.state_history keeps (newest)."
    )
    local_auth: bool = Field(
        default=False,
        description="Local stack only: the API serves the local signing key's JWKS at "
        "/auth/v1/.well-known/jwks.json, so SUPABASE_URL can point at the API itself.",
    )
    log_json: bool = Field(default=True, description="Structured JSON log lines.")

    @property
    def jwt_issuer(self) -> str:
        """The `iss` claim Supabase Auth puts in access tokens."""
        return self.supabase_url.rstrip("/") + "/auth/v1"

    @property
    def jwks_url(self) -> str:
        """Where the project's public signing keys are published."""
        return self.supabase_jwks_url or self.jwt_issuer + "/.well-known/jwks.json"

    @property
    def storage_dir(self) -> Path:
        """Folder the local storage backend writes into."""
        return self.local_storage_dir or self.data_dir / "storage"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
