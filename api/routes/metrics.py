"""GET /metrics: every engine metric in the Prometheus text format (see api/metrics.py).

An operator endpoint: `Authorization: Bearer <METRICS_TOKEN>`; with METRICS_TOKEN unset it
answers 403 (the metrics name every tenant's workflows, job counts and failure rates).
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.deps import MetricsRegistryDep, require_operator
from api.responses import OPERATOR_CHECK, error_responses

router = APIRouter(tags=["operations"])


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    dependencies=[Depends(require_operator)],
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}, **error_responses(*OPERATOR_CHECK)},
)
def metrics(registry: MetricsRegistryDep) -> Response:
    """Every engine metric in the Prometheus text format."""
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
