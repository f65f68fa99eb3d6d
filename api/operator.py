"""Operator endpoints: the alerts the maintenance flow raised, and the operator token check.

Operators authenticate with `Authorization: Bearer <METRICS_TOKEN>`, the same token that
protects GET /metrics. User JWTs are not accepted here: these endpoints show every user's
jobs' trouble. With no METRICS_TOKEN configured, operator endpoints are disabled (403).
"""

from __future__ import annotations

import hmac
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.auth import AuthError, bearer_token
from engine.db.alert_store import AlertStore


def configured_token(request: Request) -> str | None:
    """The operator token of the app's settings (METRICS_TOKEN), or None when unset."""
    settings = getattr(request.app.state, "settings", None)
    secret = getattr(settings, "metrics_token", None)
    if secret is None:
        return None
    value = secret.get_secret_value() if hasattr(secret, "get_secret_value") else str(secret)
    return value or None


def check_operator_token(request: Request, expected: str) -> None:
    """Raise AuthError (401 with a Bearer challenge) unless the request carries `expected`."""
    token = bearer_token(request.headers.get("authorization"))
    if not hmac.compare_digest(token.encode("utf-8"), expected.encode("utf-8")):
        raise AuthError("invalid operator token")


def require_operator(request: Request) -> None:
    """Dependency: the caller holds the operator token; 403 when none is configured."""
    expected = configured_token(request)
    if expected is None:
        raise StarletteHTTPException(
            403, "operator endpoints are disabled: set METRICS_TOKEN to enable them"
        )
    check_operator_token(request, expected)


class Alert(BaseModel):
    """One alert as operators see it."""

    id: int
    kind: str
    subject: str
    severity: Literal["info", "warning", "critical"]
    message: str
    detail: dict[str, Any]
    opened_at: datetime
    last_seen_at: datetime
    resolved_at: datetime | None
    delivered_at: datetime | None
    resolution_delivered_at: datetime | None
    delivery_attempts: int
    last_delivery_error: str | None


class AlertList(BaseModel):
    """GET /operator/alerts: alerts newest first."""

    alerts: list[Alert]


operator_router = APIRouter(
    prefix="/operator", tags=["operations"], dependencies=[Depends(require_operator)]
)


@operator_router.get("/alerts", response_model=AlertList, summary="Alerts, newest first")
def list_alerts(
    request: Request,
    state: Annotated[Literal["open", "resolved", "all"], Query()] = "open",
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> AlertList:
    """Open alerts (default), resolved ones, or all, from the alerts table."""
    alerts = AlertStore(request.app.state.store.pool)
    rows = alerts.list_alerts(state, limit=limit)
    return AlertList(alerts=[Alert.model_validate(r) for r in rows])
