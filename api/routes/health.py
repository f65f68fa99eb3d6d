"""GET /health: whether the database and Prefect answer. Public, limited per client IP."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from api.deps import StarterDep, StoreDep, limit_anonymous
from api.models import Health

router = APIRouter(tags=["operations"])


@router.get(
    "/health",
    response_model=Health,
    summary="Reachability",
    dependencies=[Depends(limit_anonymous)],
    responses={503: {"model": Health, "description": "The database does not answer."}},
)
def health(store: StoreDep, starter: StarterDep) -> JSONResponse:
    """Database and Prefect reachability; 503 when the database is down."""
    try:
        with store.pool.connection(timeout=2) as conn:
            conn.execute("select 1")
        db_ok = True
    except Exception:
        db_ok = False
    prefect_ok = bool(starter.healthy())
    status = "ok" if db_ok and prefect_ok else ("degraded" if db_ok else "down")
    body = Health(status=status, database=db_ok, prefect=prefect_ok)
    return JSONResponse(body.model_dump(), status_code=200 if db_ok else 503)
