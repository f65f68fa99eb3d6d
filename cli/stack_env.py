"""The environment of the local stack's processes: what every child shares, and what the
Prefect server started here gets on top."""

from __future__ import annotations

import os
from pathlib import Path

from cli.services import PYTHON
from engine.settings import PROJECT_ROOT, Settings, get_settings

#: Caller settings an isolated stack drops, besides every PREFECT_* variable.
FOREIGN_ENV = (
    "DATABASE_URL",
    "SUPABASE_URL",
    "SUPABASE_JWT_SECRET",
    "SUPABASE_JWKS_URL",
    "LOCAL_AUTH",
    "WARM_POOL",
)


def deploy_environment(base: dict[str, str], warm_pool: str) -> dict[str, str]:
    """What prefect.yaml reads when it is deployed: this checkout and interpreter (unless the
    caller's SUPAFLOW_PROJECT_DIR / SUPAFLOW_PYTHON say otherwise) and the warm pool."""
    return {
        "SUPAFLOW_PROJECT_DIR": base.get("SUPAFLOW_PROJECT_DIR", str(PROJECT_ROOT)),
        "SUPAFLOW_PYTHON": base.get("SUPAFLOW_PYTHON", PYTHON),
        "WARM_POOL": warm_pool,
    }


def stack_environment(
    root: Path, prefect_api_url: str, api_url: str, *, isolated: bool
) -> dict[str, str]:
    """The environment every process of the stack shares (the database URL comes later)."""
    base = {
        k: v
        for k, v in os.environ.items()
        if not isolated or (k not in FOREIGN_ENV and not k.startswith("PREFECT_"))
    }
    settings = get_settings()
    env = {
        **base,
        "DATA_DIR": str(root),
        "PREFECT_API_URL": prefect_api_url,
        "PREFECT_HOME": str(root / "prefect"),
        "DO_NOT_TRACK": "1",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false" if isolated else "true",
        "PREFECT_WORKER_QUERY_SECONDS": base.get("PREFECT_WORKER_QUERY_SECONDS", "1"),
        "PREFECT_WORKER_PREFETCH_SECONDS": base.get("PREFECT_WORKER_PREFETCH_SECONDS", "1"),
    }
    # prefect.yaml puts run-workflow-warm on this pool; the stack runs this checkout.
    warm_pool = str(Settings.model_fields["warm_pool"].default) if isolated else settings.warm_pool
    env.update(deploy_environment({}, warm_pool))
    if isolated:
        env["TMPDIR"] = str(root / "tmp")
    if settings.log_json:
        from engine.logging_json import prefect_logging_env

        env.update(prefect_logging_env())
    if isolated or (not settings.supabase_jwt_secret and "SUPABASE_URL" not in base):
        # Local auth: the API serves the local key's JWKS at the Supabase Auth path.
        env["SUPABASE_URL"] = api_url
        env["LOCAL_AUTH"] = "true"
    return env


def prefect_server_env() -> dict[str, str]:
    """Settings of a Prefect server the stack starts itself.

    The scheduler keeps a few runs of each schedule ahead (Prefect's default is up to 100):
    maintenance runs every 30 s, and a hundred upcoming ones would fill `prefect flow-run ls`
    and the UI's run list before any job. Three runs span 90 s, and the loop refills every
    15 s, so none is missed.

    Services the engine does not use are off, each a share of the server's CPU per job
    (measured with py-spy during a burst): `triggers` evaluates automations against every
    event (the engine's alerts are its own), `pause_expirations` times out paused runs (the
    engine pauses none) and `repossessor` expires concurrency leases (none are taken). Set the
    variable to true in the environment to have one back; the flow-run, task-run and log views
    of the UI need none of them.
    """
    env = {
        "PREFECT_SERVER_SERVICES_SCHEDULER_MAX_RUNS": "3",
        "PREFECT_SERVER_SERVICES_SCHEDULER_MIN_RUNS": "1",
        "PREFECT_SERVER_SERVICES_SCHEDULER_MIN_SCHEDULED_TIME": "PT60S",
        "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "15",
        "PREFECT_SERVER_SERVICES_TRIGGERS_ENABLED": "false",
        "PREFECT_SERVER_SERVICES_PAUSE_EXPIRATIONS_ENABLED": "false",
        "PREFECT_SERVER_SERVICES_REPOSSESSOR_ENABLED": "false",
    }
    # The caller's own choice wins.
    return {k: os.environ.get(k, v) for k, v in env.items()}
