"""Runtime configuration, read from environment variables (and an optional `.env`).

Secrets are never stored here by value in code: each one is read from the environment
variable that names it, and `Settings.__repr__` hides them.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

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
    api_max_json_depth: int = Field(
        default=64,
        ge=1,
        le=200,
        description="Deepest nesting of arrays and objects in a JSON body, the body itself "
        "counting as one (the engine's serialisers stop at 255).",
    )
    rate_limits: str = Field(
        default="start=60/minute;read=600/minute;anon=30/minute;operator=10/minute",
        description="Per-endpoint-group limits, 'group=limit;...' in `limits` notation.",
    )
    trusted_proxies: str = Field(
        default="",
        description="Comma-separated IPs or CIDRs of the proxies whose X-Forwarded-For is "
        "believed; empty: the connection's peer address is the client.",
    )
    auth_user_cache_seconds: float = Field(
        default=5.0,
        ge=0,
        description="How long a process trusts its answer to 'is this token's user still in "
        "auth.users'; 0 looks every request up.",
    )
    redis_url: str | None = Field(default=None, description="Rate-limit storage; memory if unset.")
    rate_limit_fallback_seconds: float = Field(
        default=5.0,
        gt=0,
        allow_inf_nan=False,
        description="While REDIS_URL fails, each API process limits on its own for this long "
        "before one request tries Redis again.",
    )
    metrics_token: SecretStr | None = Field(
        default=None,
        description="Bearer token of the operator endpoints (/metrics, /operator/*); unset: "
        "they answer 403.",
    )
    prefect_deployment: str = Field(
        default="run-workflow/run-workflow", description="Deployment that runs one job."
    )
    db_pool_min: int = Field(default=1, description="Connections kept open per process.")
    db_pool_max: int = Field(
        default=20, description="Connections per process (a warm worker's runs share them)."
    )
    state_history_limit: int = Field(
        default=100, description="How many transitions jobs.state_history keeps (newest)."
    )
    worker_mode: Literal["warm", "process"] = Field(
        default="warm",
        description="'warm': flow runs execute in-process in a long-lived worker (fast); "
        "'process': a new Python process per run (isolation).",
    )
    worker_limit: int = Field(default=10, ge=1, description="Flow runs a warm worker runs at once.")
    warm_pool: str = Field(default="supaflow-warm", description="Work pool of the warm worker.")
    local_prefect_database: Literal["postgresql", "sqlite"] = Field(
        default="postgresql",
        description="`supaflow up` without PREFECT_API_URL: its Prefect server's database, a "
        "database `prefect` in the embedded PostgreSQL, or SQLite in PREFECT_HOME (fallback; "
        "slower under load). With DATABASE_URL set, Prefect uses SQLite unless "
        "PREFECT_SERVER_DATABASE_CONNECTION_URL is given.",
    )
    retry_reschedule_seconds: float = Field(
        default=30.0,
        ge=0,
        description="A step's retry delay above this ends the flow run, which is scheduled "
        "again for the retry (the job stays awaiting_retry and holds no worker slot); shorter "
        "delays wait inside the flow run.",
    )
    max_fan_out_items: int = Field(
        default=1000,
        ge=1,
        description="Most items a step's for_each may yield; a longer list fails the step "
        "(error kind 'mapping') before any item runs.",
    )
    local_background_nice: int = Field(
        default=10,
        ge=0,
        le=19,
        description="The local stack's niceness for its Prefect server and workers, so the "
        "API answers first on a saturated machine (0: all equal).",
    )
    job_heartbeat_seconds: float = Field(
        default=10.0, gt=0, description="How often a running flow marks its job alive."
    )
    heartbeat_window_seconds: float = Field(
        default=60.0,
        gt=0,
        description="A running job silent this long is presumed dead and resubmitted.",
    )
    max_start_delay_seconds: float = Field(
        default=30 * 24 * 3600,
        gt=0,
        allow_inf_nan=False,
        description="Furthest ahead a delayed start may be (POST /workflows/start start_at or "
        "delay_seconds); 30 days by default.",
    )
    dispatch_grace_seconds: float = Field(
        default=10.0, ge=0, description="Age before maintenance takes an undispatched job."
    )
    api_admission: bool = Field(
        default=True,
        description="Run the admission dispatcher (pending jobs to Prefect) in the API process; "
        "off when `supaflow dispatcher` runs on its own.",
    )
    admission_batch: int = Field(default=50, ge=1, description="Jobs one admission claim takes.")
    admission_parallel: int = Field(
        default=8, ge=1, description="Flow-run creations the dispatcher has in flight at once."
    )
    admission_poll_seconds: float = Field(
        default=5.0, gt=0, description="Admission's look for pending jobs without a NOTIFY."
    )
    resubmit_backoff_seconds: float = Field(
        default=5.0, ge=0, description="First delay of job-level resubmission (doubles)."
    )
    schedule_deployment: str = Field(
        default="fire-schedule/fire-schedule",
        description="Deployment whose Prefect schedules fire the schedules rows "
        "(flows/schedules.py).",
    )
    schedule_misfire_grace_seconds: float = Field(
        default=300.0,
        ge=0,
        description="A schedule firing starting later than this is missed, unless it is the "
        "schedule's latest due firing and its catch_up is 'latest' (it then runs once).",
    )
    alert_schedule_failures: int = Field(
        default=3, ge=1, description="Failed jobs in a row that make a schedule alert."
    )
    min_schedule_interval_seconds: float = Field(
        default=60.0,
        gt=0,
        allow_inf_nan=False,
        description="Shortest interval_seconds a schedule may have (POST/PATCH /schedules).",
    )
    alert_failure_rate_threshold: float = Field(
        default=0.5, ge=0, le=1, description="Failed/finished share per workflow that alerts."
    )
    alert_failure_rate_min_jobs: int = Field(
        default=5, ge=1, description="Finished jobs needed in the window before judging the rate."
    )
    alert_failure_rate_window_seconds: float = Field(
        default=3600, gt=0, description="Failure-rate window."
    )
    alert_stalled_running_seconds: float = Field(
        default=1800, gt=0, description="`running` with no heartbeat this long is stalled."
    )
    alert_stalled_retry_grace_seconds: float = Field(
        default=300, gt=0, description="`awaiting_retry` this far past next_retry_at is stalled."
    )
    alert_queue_age_seconds: float = Field(
        default=300, gt=0, description="Oldest pending job age that alerts."
    )
    alert_maintenance_seconds: float = Field(
        default=60, gt=0, description="Maintenance pass duration that alerts."
    )
    alert_config_error_window_seconds: float = Field(
        default=3600, gt=0, description="Window for configuration lookup errors."
    )
    alert_webhook_url: str | None = Field(
        default=None, description="Where alerts are POSTed (signed); unset: stored only."
    )
    alert_webhook_secret: SecretStr | None = Field(
        default=None, description="HMAC secret of alert deliveries."
    )
    alert_webhook_timeout_seconds: float = Field(default=10, gt=0)
    alert_webhook_max_attempts: int = Field(default=10, ge=1)
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
