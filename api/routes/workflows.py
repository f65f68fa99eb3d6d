"""GET /workflows (and one workflow, its versions) and POST /workflows/start: what a user
can run, and running it.

A start runs the version the body names, or the workflow's default version; the job is
pinned to that version and to its transformers' current versions, for every run it gets."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar
from uuid import UUID

from fastapi import APIRouter, Header, Path, Response

from api.auth import AuthError
from api.deps import ReadPrincipal, SettingsDep, StartPrincipal, StoreDep
from api.models import (
    StartCallback,
    StartRequest,
    StartResponse,
    WorkflowDetail,
    WorkflowList,
    WorkflowSummary,
    WorkflowVersion,
    WorkflowVersionDetail,
)
from api.responses import USER_CHECK, error_responses
from api.start_times import only_in_the_past, refuse, start_problems
from api.strict_input import StrictJSONRoute
from engine.db.rows import CreatedJob
from engine.db.store import JobStore, UnknownUserError
from engine.definitions.callback_target import CallbackTarget
from engine.definitions.inputs import input_problems
from engine.errors import InputValidationError, NotFoundError, WorkflowDisabledError
from engine.jobs.callbacks import resolve_target
from engine.security.destinations import url_destination_problem
from engine.settings import Settings

router = APIRouter(route_class=StrictJSONRoute)
_Route = TypeVar("_Route", bound=Callable[..., Any])

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
    fields = body.model_dump(mode="json")
    if fields.get("workflow_version") is None:
        # A body without a version hashes as it did before versions existed.
        fields.pop("workflow_version", None)
    for name in ("on_finish", "start_at", "delay_seconds"):
        if fields.get(name) is None:
            # Likewise a body without a callback target or a delayed start.
            fields.pop(name, None)
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"))
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


def callback_target(
    workflow: dict[str, Any], requested: StartCallback | None, settings: Settings
) -> dict[str, Any] | None:
    """The job's `on_finish` target: the request's URL, else the definition's (its secret
    variable, attempts and delay apply to both). InputValidationError (422) naming the field
    when the address is malformed or not allowed by the SSRF policy (HTTP_ALLOWLIST)."""
    raw = (workflow["definition"] or {}).get("on_finish")
    defined = CallbackTarget.model_validate(raw) if raw else None
    target = resolve_target(defined, None if requested is None else requested.url)
    if target is None:
        return None
    problem = url_destination_problem(str(target["url"]), settings.http_allowlist)
    if problem is not None:
        where = "body.on_finish.url" if requested is not None else "workflow.on_finish.url"
        raise InputValidationError(
            "on_finish.url is not an allowed callback address",
            details=[{"location": where, "message": problem, "type": "callback_address"}],
        )
    return target


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
    settings: SettingsDep,
    idempotency_key: IdempotencyKey = None,
) -> StartResponse:
    """Record a `pending` job for the caller; does not wait on Prefect.

    The committed row is the request to run it: its insert notifies the admission dispatcher
    (engine/admission.py), which creates the flow run. If no dispatcher runs, the maintenance
    flow's dispatch pass takes the job. With `start_at` or `delay_seconds` the job stays
    pending until that time (`scheduled_for`), its flow run Scheduled for it."""
    workflow = store.get_workflow(body.workflow_id, body.workflow_version)
    if not workflow["enabled"]:
        raise WorkflowDisabledError(f"workflow '{body.workflow_id}' is disabled")
    check_input_data(workflow, body.input_data)
    on_finish = callback_target(workflow, body.on_finish, settings)
    replay = _checked_start_time(body, store, principal.user_id, idempotency_key, settings)
    try:
        created = replay or store.create_job(
            user_id=principal.user_id,
            workflow_id=body.workflow_id,
            workflow_version=int(workflow["version"]),
            input_data=body.input_data,
            idempotency_key=idempotency_key,
            request_hash=request_hash(body),
            on_finish=on_finish,
            start_at=body.start_at,
            delay_seconds=body.delay_seconds,
        )
    except UnknownUserError:
        # A valid signature for a user that no longer exists: the token is revoked.
        raise AuthError("token subject is not a known user") from None
    if not created.created:
        response.status_code = 200
    response.headers["Location"] = f"/jobs/{created.id}"
    return StartResponse(
        job_id=UUID(created.id),
        status=created.status,
        created_at=created.created_at,
        scheduled_for=created.scheduled_for,
    )


def _checked_start_time(
    body: StartRequest,
    store: JobStore,
    user_id: str,
    idempotency_key: str | None,
    settings: Settings,
) -> CreatedJob | None:
    """Raise the 422 of a bad `start_at` / `delay_seconds` (api/start_times.py), except for a
    replay: a `start_at` that has passed since this Idempotency-Key and body created their
    job answers that job (returned here; None: go on and create the job)."""
    problems = start_problems(
        body.start_at,
        body.delay_seconds,
        horizon_seconds=settings.max_start_delay_seconds,
        now=datetime.now(UTC),
    )
    if not problems:
        return None
    if only_in_the_past(problems) and idempotency_key is not None:
        replay = store.replayed_job(user_id, idempotency_key, request_hash(body))
        if replay is not None:
            return replay
    raise refuse(problems)


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
    return WorkflowList(workflows=[_summary(r) for r in rows])


def _summary(row: dict[str, Any]) -> WorkflowSummary:
    return WorkflowSummary(
        id=row["id"],
        description=row["description"],
        input_schema=row["input_schema"] or {},
        default_version=row["default_version"],
        latest_version=row["latest_version"],
        enabled=row["enabled"],
    )


WorkflowId = Annotated[str, Path(min_length=1, max_length=200, description="Workflow id.")]
Version = Annotated[int, Path(ge=1, le=2**31 - 1, description="Version number.")]


def _read(path: str, model: type[Any], summary: str) -> Callable[[_Route], _Route]:
    """The decorator of a signed-in user's read of workflows (404 when not found)."""
    return router.get(
        path,
        response_model=model,
        summary=summary,
        tags=["workflows"],
        responses=error_responses(*USER_CHECK, 404),
    )


@_read("/workflows/{workflow_id}", WorkflowDetail, "One workflow and its versions")
def get_workflow(
    workflow_id: WorkflowId, principal: ReadPrincipal, store: StoreDep
) -> WorkflowDetail:
    """The workflow, which version a start runs by default, and every version's input schema."""
    rows = store.list_workflows_for_user(principal.claims, workflow_id)
    if not rows:
        raise NotFoundError(f"workflow '{workflow_id}' does not exist")
    versions = store.workflow_versions_for_user(principal.claims, workflow_id)
    return WorkflowDetail(
        **_summary(rows[0]).model_dump(),
        versions=[WorkflowVersion.model_validate(v) for v in versions],
    )


@_read(
    "/workflows/{workflow_id}/versions/{version}",
    WorkflowVersionDetail,
    "One version of a workflow, with its definition",
)
def get_workflow_version(
    workflow_id: WorkflowId, version: Version, principal: ReadPrincipal, store: StoreDep
) -> WorkflowVersionDetail:
    """A version never changes once created: its definition is what jobs pinned to it run."""
    rows = store.workflow_versions_for_user(principal.claims, workflow_id, version)
    if rows:
        return WorkflowVersionDetail.model_validate(rows[0])
    if not store.list_workflows_for_user(principal.claims, workflow_id):
        raise NotFoundError(f"workflow '{workflow_id}' does not exist")
    raise NotFoundError(f"workflow '{workflow_id}' has no version {version}")
