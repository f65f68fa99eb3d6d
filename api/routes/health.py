"""GET /health: whether the database and Prefect answer. Public and not rate limited: the
answer is shared by every caller for a second (api/probe.py says why)."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from api.deps import HealthProbeDep, StarterDep, StoreDep, unlimited_probe
from api.models import Health
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
def health(store: StoreDep, starter: StarterDep, probe: HealthProbeDep) -> JSONResponse:
    """Database and Prefect reachability (at most a second old); 503 when the database is
    down."""
    found = probe.get(lambda: reachability(store, starter))
    db_ok, prefect_ok = found.database, found.prefect
    status = "ok" if db_ok and prefect_ok else ("degraded" if db_ok else "down")
    body = Health(status=status, database=db_ok, prefect=prefect_ok)
    return JSONResponse(body.model_dump(), status_code=200 if db_ok else 503)
