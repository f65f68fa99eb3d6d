"""GET /metrics: every engine metric in the Prometheus text format (see api/metrics.py).

Access: `Authorization: Bearer <METRICS_TOKEN>` when METRICS_TOKEN is set (open otherwise).
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.deps import MetricsRegistryDep, require_metrics_token
from api.responses import OPERATOR_CHECK, error_responses

router = APIRouter(tags=["operations"])


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    dependencies=[Depends(require_metrics_token)],
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}, **error_responses(*OPERATOR_CHECK)},
)
def metrics(registry: MetricsRegistryDep) -> Response:
    """Every engine metric in the Prometheus text format."""
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
