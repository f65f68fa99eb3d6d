"""Decisions of wait steps: GET /jobs/{id}/approvals, POST /approvals/{id} and
POST /jobs/{id}/events/{name}.

A decision commits in one transaction (the wait decided, the job's state_history entry and
its `wait_decided` event; engine.db.waits), then resumes the job's flow run through
engine.dispatch. When Prefect cannot be reached the answer says `resumed: false` and the
maintenance flow resumes the run later: the decision itself is kept.

Who may decide an approval: the job's owner when the step names no `deciders`; otherwise the
users whose verified token's claim is one of the rule's values (the owner too, unless
`forbid_self_approval`). An owner-only approval is 404 to anyone but its owner (like the
job); an approval with a rule is 403 to a user the rule does not allow.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Path
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.auth import Principal
from api.deps import ReadPrincipal, StarterDep, StartPrincipal, StoreDep
from api.models import ErrorBody
from api.responses import USER_CHECK, error_responses
from api.strict_input import StrictJSONRoute
from api.wait_models import (
    Approval,
    ApprovalList,
    DecisionRequest,
    DecisionResponse,
    EventRequest,
    EventResponse,
    WokenWait,
)
from engine.db.rows import Row
from engine.db.store import JobStore
from engine.db.waits import WaitStore
from engine.definitions.inputs import input_problems
from engine.definitions.wait_steps import EVENT_NAME_PATTERN, ApprovalWait, EventWait
from engine.errors import ConflictError, InputValidationError, NotFoundError
from engine.jobs import waits
from engine.jobs.wait_fields import spec_of

router = APIRouter(tags=["approvals"], route_class=StrictJSONRoute)

_DECIDE_ERRORS: dict[int | str, dict[str, Any]] = {
    403: {"model": ErrorBody, "description": "The approval's rule does not allow you."},
    409: {"model": ErrorBody, "description": "The approval is decided already."},
}
_EVENT_CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {
        "model": ErrorBody,
        "description": "Nothing waits for this event now (no pending wait of that name, or "
        "its match does not hold). Events are not stored for later waits.",
    }
}


def _owns_job(store: JobStore, principal: Principal, job_id: str) -> bool:
    try:
        store.get_job_for_user(principal.claims, job_id)
    except NotFoundError:
        return False
    return True


@router.get(
    "/jobs/{job_id}/approvals",
    response_model=ApprovalList,
    summary="List a job's approvals",
    responses=error_responses(*USER_CHECK, 404),
)
def list_approvals(job_id: UUID, principal: ReadPrincipal, store: StoreDep) -> ApprovalList:
    """Every approval of the job, oldest first: all of them for its owner, those the caller
    may decide for a decider; 404 for anyone else and for an unknown job."""
    wait_store = WaitStore(store)
    rows = wait_store.list_for_job(str(job_id))
    if not _owns_job(store, principal, str(job_id)):
        visible = wait_store.visible_ids(principal.claims, str(job_id))
        if not visible:
            raise NotFoundError(f"job '{job_id}' not found")
        rows = [r for r in rows if str(r["id"]) in visible]
    return ApprovalList(approvals=[Approval.from_row(r) for r in rows])


def _check_decider(wait: Row, principal: Principal) -> ApprovalWait:
    """The approval's spec once the caller may decide it (404/403 otherwise)."""
    if wait["kind"] != "approval":
        raise NotFoundError(f"approval '{wait['id']}' not found")
    spec = spec_of("approval", wait["spec"])
    assert isinstance(spec, ApprovalWait)
    owner = str(wait["user_id"]) if wait["user_id"] else None
    verdict = waits.may_decide(spec, principal.claims, owner)
    if not verdict.allowed:
        if spec.deciders is None:
            raise NotFoundError(f"approval '{wait['id']}' not found")
        raise StarletteHTTPException(403, f"you may not decide this approval: {verdict.reason}")
    return spec


def _check_form(spec: ApprovalWait, form: dict[str, Any] | None) -> None:
    if spec.form_schema is None:
        return
    problems = input_problems(spec.form_schema, form if form is not None else {})
    if problems:
        raise InputValidationError(
            "form does not match the approval's form_schema",
            details=[
                {
                    "pointer": "/form" + ("" if p.location == "/" else p.location),
                    "message": p.message,
                }
                for p in problems
            ],
        )


@router.post(
    "/approvals/{approval_id}",
    response_model=DecisionResponse,
    summary="Approve or reject",
    responses=error_responses(*USER_CHECK, 404) | _DECIDE_ERRORS,
)
def decide_approval(
    approval_id: UUID,
    body: DecisionRequest,
    principal: StartPrincipal,
    store: StoreDep,
    starter: StarterDep,
) -> DecisionResponse:
    """Decide the approval (its form validated against its form_schema: 422 naming each
    field), then resume its job; 409 when it is decided already."""
    decided_at = datetime.now(UTC)

    def change(wait: Row) -> dict[str, Any]:
        spec = _check_decider(wait, principal)
        if wait["status"] != "pending":
            raise ConflictError(f"approval '{approval_id}' is already decided")
        _check_form(spec, body.form)
        output = waits.approval_output(
            body.decision,
            comment=body.comment,
            form=body.form,
            decided_by=principal.user_id,
            decided_at=decided_at,
        )
        return {
            "decision": body.decision,
            "comment": body.comment,
            "form": body.form,
            "output": output,
            "decided_by": principal.user_id,
            "decided_at": decided_at,
            "reason": "decision",
        }

    wait_store = WaitStore(store)
    wait, flow_run_id = wait_store.decide(str(approval_id), change)
    resumed = starter.resume(flow_run_id) if flow_run_id else False
    [row] = [r for r in wait_store.list_for_job(str(wait["job_id"])) if r["id"] == wait["id"]]
    return DecisionResponse(approval=Approval.from_row(row), resumed=resumed)


EventName = Annotated[str, Path(pattern=EVENT_NAME_PATTERN, max_length=63)]


@router.post(
    "/jobs/{job_id}/events/{name}",
    response_model=EventResponse,
    summary="Send an event to one of your jobs",
    responses=error_responses(*USER_CHECK, 404) | _EVENT_CONFLICT,
)
def send_event(
    job_id: UUID,
    name: EventName,
    principal: StartPrincipal,
    store: StoreDep,
    starter: StarterDep,
    body: EventRequest,
) -> EventResponse:
    """Decide every pending `wait_for_event` step of the job named `name` whose `match`
    holds for the payload (the payload becomes the step's output), then resume the job.
    404 when the job is not yours; 409 when nothing waits for the event now (an event is
    not stored for a wait that begins later)."""
    payload = body.payload
    if not _owns_job(store, principal, str(job_id)):
        raise NotFoundError(f"job '{job_id}' not found")
    now = datetime.now(UTC)

    def woken(wait: Row) -> dict[str, Any] | None:
        spec = spec_of("event", wait["spec"])
        assert isinstance(spec, EventWait)
        if not waits.payload_matches(spec.match, payload):
            return None
        return {"output": payload, "decided_at": now, "reason": "event"}

    decided = WaitStore(store).send_event(str(job_id), name, woken)
    if not decided:
        raise ConflictError(
            f"nothing waits for event '{name}' on job '{job_id}'", details={"event": name}
        )
    runs = {run for _wait, run in decided if run}
    resumed = all([starter.resume(run) for run in runs]) if runs else False
    return EventResponse(
        job_id=job_id,
        event=name,
        woke=[WokenWait(wait_id=w["id"], step_id=w["step_id"]) for w, _run in decided],
        resumed=resumed,
    )
