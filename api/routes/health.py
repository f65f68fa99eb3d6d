"""GET /health: whether the database and Prefect answer, and how rate limits are counted.
Public and not rate limited: the reachability answer is shared by every caller for a second
(api/probe.py says why); the rate-limit state is this process's, read as it is (it asks Redis
nothing)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from api.deps import HealthProbeDep, RateLimiterDep, StarterDep, StoreDep, unlimited_probe
from api.models import Health, RateLimitHealth
from api.probe import Reachability
from engine.db.store import JobStore
from engine.dispatch import RunStarter

router = APIRouter(tags=["operations"])


def reachability(store: JobStore, starter: RunStarter) -> Reachability:
    """Ask the database (2 s at most) and Prefect whether they answer."""
    try:
        with store.pool.connection(timeout=2) as conn:
            conn.execute("select 1")
        db_ok = True
    except Exception:
        db_ok = False
    return Reachability(database=db_ok, prefect=bool(starter.healthy()))


@router.get(
    "/health",
    response_model=Health,
    summary="Reachability",
    dependencies=[Depends(unlimited_probe)],
    responses={503: {"model": Health, "description": "The database does not answer."}},
)
def health(
    store: StoreDep, starter: StarterDep, probe: HealthProbeDep, limiter: RateLimiterDep
) -> JSONResponse:
    """Database and Prefect reachability (at most a second old) and the rate limiter's scope;
    503 when the database is down. Redis failing only degrades: the limits still hold, per
    process."""
    found = probe.get(lambda: reachability(store, starter))
    db_ok, prefect_ok = found.database, found.prefect
    limits = limiter.status()
    status: Literal["ok", "degraded", "down"] = "down"
    if db_ok:
        status = "ok" if prefect_ok and limits.fallback_since is None else "degraded"
    body = Health(
        status=status,
        database=db_ok,
        prefect=prefect_ok,
        rate_limit=RateLimitHealth(
            storage=limits.storage, scope=limits.scope, fallback_since=limits.fallback_since
        ),
    )
    return JSONResponse(body.model_dump(mode="json"), status_code=200 if db_ok else 503)
