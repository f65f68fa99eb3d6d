"""GET /workflows and POST /workflows/start: what a user can run, and running it."""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Header, Response

from api.auth import AuthError
from api.deps import ReadPrincipal, StartPrincipal, StoreDep
from api.models import StartRequest, StartResponse, WorkflowList, WorkflowSummary
from api.responses import USER_CHECK, error_responses
from api.strict_input import StrictJSONRoute
from engine.db.store import UnknownUserError
from engine.definitions.inputs import input_problems
from engine.errors import InputValidationError

router = APIRouter(route_class=StrictJSONRoute)

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        description="Replaying the same key and body returns the same job.",
    ),
]


def request_hash(body: StartRequest) -> str:
    """A stable fingerprint of a start request, to tell idempotent replays from conflicts."""
    canonical = json.dumps(body.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def check_input_data(workflow: dict[str, Any], input_data: dict[str, Any]) -> None:
    """Raise InputValidationError, one detail per problem, unless `input_data` fits the
    workflow's input_schema (no schema: any object)."""
    schema = (workflow["definition"] or {}).get("input_schema") or {"type": "object"}
    problems = input_problems(schema, input_data)
    if problems:
        raise InputValidationError(
            "input_data does not match the workflow's input_schema",
            details=[
                {
                    "pointer": "/input_data" + (p.location if p.location != "/" else ""),
                    "message": p.message,
                }
                for p in problems
            ],
        )


@router.post(
    "/workflows/start",
    response_model=StartResponse,
    status_code=201,
    summary="Start a workflow job",
    tags=["jobs"],
    responses={
        200: {
            "model": StartResponse,
            "description": "A replay: this Idempotency-Key and body started this job before.",
        },
        **error_responses(*USER_CHECK, 404, 409),
    },
)
def start_workflow(
    body: StartRequest,
    principal: StartPrincipal,
    store: StoreDep,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> StartResponse:
    """Record a `pending` job for the caller; does not wait on Prefect.

    The committed row is the request to run it: its insert notifies the admission dispatcher
    (engine/admission.py), which creates the flow run. If no dispatcher runs, the maintenance
    flow's dispatch pass takes the job."""
    check_input_data(store.get_workflow(body.workflow_id), body.input_data)
    try:
        created = store.create_job(
            user_id=principal.user_id,
            workflow_id=body.workflow_id,
            input_data=body.input_data,
            idempotency_key=idempotency_key,
            request_hash=request_hash(body),
        )
    except UnknownUserError:
        # A valid signature for a user that no longer exists: the token is revoked.
        raise AuthError("token subject is not a known user") from None
    if not created.created:
        response.status_code = 200
    response.headers["Location"] = f"/jobs/{created.id}"
    return StartResponse(
        job_id=UUID(created.id), status=created.status, created_at=created.created_at
    )


@router.get(
    "/workflows",
    response_model=WorkflowList,
    summary="Workflows you can start",
    tags=["workflows"],
    responses=error_responses(*USER_CHECK),
)
def list_workflows(principal: ReadPrincipal, store: StoreDep) -> WorkflowList:
    """Every workflow with the input schema its input_data must satisfy."""
    rows = store.list_workflows_for_user(principal.claims)
    return WorkflowList(
        workflows=[
            WorkflowSummary(
                id=r["id"], description=r["description"], input_schema=r["input_schema"] or {}
            )
            for r in rows
        ]
    )
