"""The OpenAPI document lists every status each endpoint answers, each with its body: the error
statuses with the uniform error body, the successes (a replay's 200 too) with their models."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from api.app import create_app
from engine.settings import Settings

#: Every documented operation and the statuses it answers: a route that starts answering
#: another status (or stops) must change this table, on purpose.
#: What a wait's decision route (an approval's, an event's) answers besides 403.
DECISION_STATUSES = {200, 400, 401, 404, 409, 413, 422, 429, 431, 500, 503}

STATUSES: dict[tuple[str, str], set[int]] = {
    ("POST", "/workflows/start"): {200, 201, 400, 401, 404, 409, 413, 422, 429, 431, 500, 503},
    ("GET", "/workflows"): {200, 400, 401, 413, 422, 429, 431, 500, 503},
    ("GET", "/workflows/{workflow_id}"): {200, 400, 401, 404, 413, 422, 429, 431, 500, 503},
    ("GET", "/workflows/{workflow_id}/versions/{version}"): {
        200,
        400,
        401,
        404,
        413,
        422,
        429,
        431,
        500,
        503,
    },
    ("GET", "/jobs"): {200, 400, 401, 413, 422, 429, 431, 500, 503},
    ("GET", "/jobs/{job_id}"): {200, 400, 401, 404, 413, 422, 429, 431, 500, 503},
    ("POST", "/jobs/{job_id}/cancel"): {200, 202, 400, 401, 404, 409, 413, 422, 429, 431, 500, 503},
    ("POST", "/jobs/{job_id}/rerun"): {202, 400, 401, 404, 409, 413, 422, 429, 431, 500, 503},
    ("GET", "/jobs/{job_id}/approvals"): {200, 400, 401, 404, 413, 422, 429, 431, 500, 503},
    ("POST", "/approvals/{approval_id}"): {403} | DECISION_STATUSES,
    ("POST", "/jobs/{job_id}/events/{name}"): DECISION_STATUSES,
    ("POST", "/schedules"): {201, 400, 401, 404, 409, 413, 422, 429, 431, 500, 503},
    ("GET", "/schedules"): {200, 400, 401, 413, 422, 429, 431, 500, 503},
    ("GET", "/schedules/{schedule_id}"): {200, 400, 401, 404, 413, 422, 429, 431, 500, 503},
    ("PATCH", "/schedules/{schedule_id}"): {
        200,
        400,
        401,
        404,
        409,
        413,
        422,
        429,
        431,
        500,
        503,
    },
    ("DELETE", "/schedules/{schedule_id}"): {204, 400, 401, 404, 413, 422, 429, 431, 500, 503},
    ("GET", "/operator/alerts"): {200, 400, 401, 403, 413, 422, 429, 431, 500},
    ("GET", "/metrics"): {200, 400, 401, 403, 413, 422, 429, 431, 500},
    ("GET", "/health"): {200, 400, 413, 422, 431, 500, 503},
}

#: The body schema of each success (and of the health probe's 503, which is a Health too).
BODIES: dict[tuple[str, str, int], str] = {
    ("POST", "/workflows/start", 200): "StartResponse",
    ("POST", "/workflows/start", 201): "StartResponse",
    ("GET", "/workflows", 200): "WorkflowList",
    ("GET", "/workflows/{workflow_id}", 200): "WorkflowDetail",
    ("GET", "/workflows/{workflow_id}/versions/{version}", 200): "WorkflowVersionDetail",
    ("GET", "/jobs", 200): "JobList",
    ("GET", "/jobs/{job_id}", 200): "Job",
    ("POST", "/jobs/{job_id}/cancel", 200): "CancelResponse",
    ("POST", "/jobs/{job_id}/cancel", 202): "CancelResponse",
    ("POST", "/jobs/{job_id}/rerun", 202): "RerunResponse",
    ("GET", "/jobs/{job_id}/approvals", 200): "ApprovalList",
    ("POST", "/approvals/{approval_id}", 200): "DecisionResponse",
    ("POST", "/jobs/{job_id}/events/{name}", 200): "EventResponse",
    ("POST", "/schedules", 201): "Schedule",
    ("GET", "/schedules", 200): "ScheduleList",
    ("GET", "/schedules/{schedule_id}", 200): "Schedule",
    ("PATCH", "/schedules/{schedule_id}", 200): "Schedule",
    ("GET", "/operator/alerts", 200): "AlertList",
    ("GET", "/health", 200): "Health",
    ("GET", "/health", 503): "Health",
}


def documented(make_settings: Callable[..., Settings], tmp_path: Path) -> dict[str, Any]:
    """The OpenAPI document of the app with every optional route on."""
    return create_app(make_settings(local_auth=True, data_dir=tmp_path)).openapi()


def documented_statuses(doc: dict[str, Any]) -> dict[tuple[str, str], set[int]]:
    """The statuses an OpenAPI document lists for each (method, path template)."""
    return {
        (method.upper(), path): {int(status) for status in operation["responses"]}
        for path, operations in doc["paths"].items()
        for method, operation in operations.items()
    }


def schema_name(response: dict[str, Any]) -> str | None:
    """The component a response's JSON body refers to, if it has one."""
    schema = response.get("content", {}).get("application/json", {}).get("schema", {})
    ref = schema.get("$ref")
    return ref.rsplit("/", 1)[-1] if isinstance(ref, str) else None


def test_every_operation_documents_exactly_the_statuses_it_answers(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """Each operation lists the statuses of the table, no fewer and no more."""
    assert documented_statuses(documented(make_settings, tmp_path)) == STATUSES


def test_every_response_names_its_body(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """Successes carry their models; every error status carries the uniform ErrorBody with a
    description saying when it happens (not FastAPI's default validation body)."""
    doc = documented(make_settings, tmp_path)
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                key = (method.upper(), path, int(status))
                expected = BODIES.get(key, "ErrorBody" if int(status) >= 400 else None)
                assert schema_name(response) == expected, key
                assert response["description"], key
    assert "HTTPValidationError" not in doc["components"]["schemas"]
