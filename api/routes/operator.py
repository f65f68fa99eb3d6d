"""GET /operator/alerts: the alerts the maintenance flow raised.

Operators authenticate with `Authorization: Bearer <METRICS_TOKEN>`, the same token that
protects GET /metrics; with no METRICS_TOKEN configured, operator endpoints are disabled (403).
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query

from api.deps import StoreDep, require_operator
from api.models import Alert, AlertList
from api.responses import OPERATOR_CHECK, error_responses
from engine.db.alert_store import AlertStore

router = APIRouter(
    prefix="/operator",
    tags=["operations"],
    dependencies=[Depends(require_operator)],
    responses=error_responses(*OPERATOR_CHECK),
)


@router.get("/alerts", response_model=AlertList, summary="Alerts, newest first")
def list_alerts(
    store: StoreDep,
    state: Annotated[Literal["open", "resolved", "all"], Query()] = "open",
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> AlertList:
    """Open alerts (default), resolved ones, or all, from the alerts table."""
    rows = AlertStore(store.pool).list_alerts(state, limit=limit)
    return AlertList(alerts=[Alert.model_validate(r) for r in rows])
