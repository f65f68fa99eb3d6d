"""POST /jobs/{job_id}/cancel and POST /jobs/{job_id}/rerun: the owner's control of a job.

Both change the job row in one transaction (engine.db.job_control), then reach Prefect, only
through engine.dispatch: a job cancelled at once has its flow run set Cancelled; a rerun gets
a new flow run (idempotency key `<job_id>:rerun:<n>`). Prefect out of reach changes nothing
the caller relies on: the cancelled job is failed already, and the rerun stays pending for the
maintenance flow to dispatch.
"""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Body, Response

from api.deps import StarterDep, StartPrincipal, StoreDep
from api.models import CancelResponse, ErrorBody, RerunRequest, RerunResponse
from api.responses import USER_CHECK, error_responses
from api.strict_input import StrictJSONRoute
from engine.db import job_control
from engine.jobs.control import CANCELLED_KIND, CancelAction
from engine.jobs.transitions import JobStatus

router = APIRouter(tags=["jobs"], route_class=StrictJSONRoute)

#: The 409 of these routes: the job's status does not allow the request.
_STATUS_CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {
        "model": ErrorBody,
        "description": "The job's status does not allow it (`details.status` names it): a "
        "cancel of a job that already ended, a rerun of a job that is not failed.",
    }
}

_MESSAGES = {
    CancelAction.FAIL_NOW: "cancelled: no step was running, the job is failed",
    CancelAction.REQUEST: "cancel requested: the job stops at its next step boundary",
    CancelAction.ALREADY_REQUESTED: "cancel already requested: the job stops at its next "
    "step boundary",
}


@router.post(
    "/jobs/{job_id}/cancel",
    response_model=CancelResponse,
    status_code=202,
    summary="Cancel one of your jobs",
    responses={
        200: {
            "model": CancelResponse,
            "description": "The job had no running step (pending, waiting, or awaiting a "
            "rescheduled retry): it is failed now, error kind `cancelled`.",
        },
        **error_responses(*USER_CHECK, 404),
        **_STATUS_CONFLICT,
    },
)
def cancel_job(
    job_id: UUID,
    principal: StartPrincipal,
    store: StoreDep,
    starter: StarterDep,
    response: Response,
) -> CancelResponse:
    """202: the job's running steps finish, then it fails with error kind `cancelled` and its
    flow run ends Cancelled (asking again while that is pending is a 202 too). 200: it had no
    running step and is failed now. 409 when it already ended; 404 for another user's job."""
    outcome = job_control.cancel_job(store, str(job_id), principal.user_id)
    if outcome.action is CancelAction.FAIL_NOW:
        response.status_code = 200
        if outcome.flow_run_id is not None:
            starter.cancel(
                outcome.flow_run_id, f"job cancelled by its owner (user {principal.user_id})"
            )
    return CancelResponse(
        job_id=job_id,
        status=outcome.status.value,
        cancel_requested_at=outcome.cancel_requested_at,
        error_kind=CANCELLED_KIND if outcome.status is JobStatus.FAILED else None,
        message=_MESSAGES[outcome.action],
    )


@router.post(
    "/jobs/{job_id}/rerun",
    response_model=RerunResponse,
    status_code=202,
    summary="Run one of your failed jobs again",
    responses={**error_responses(*USER_CHECK, 404), **_STATUS_CONFLICT},
)
def rerun_job(
    job_id: UUID,
    principal: StartPrincipal,
    store: StoreDep,
    starter: StarterDep,
    response: Response,
    body: Annotated[RerunRequest, Body(default_factory=RerunRequest)],
) -> RerunResponse:
    """A failed (or cancelled) job runs its pinned workflow version again from its first
    unfinished step, keeping the finished steps' outputs; `from_step` runs that step and every
    step downstream of it again. 409 unless the job is failed; 422 naming `from_step` when it
    is not a step of the job's version."""
    rerun = job_control.rerun_job(store, str(job_id), principal.user_id, body.from_step)
    run_id = starter.try_start(str(job_id), idempotency_key=rerun.idempotency_key)
    if run_id is not None:
        store.set_flow_run(str(job_id), run_id)
    response.headers["Location"] = f"/jobs/{job_id}"
    return RerunResponse(
        job_id=job_id,
        status=JobStatus.PENDING.value,
        rerun=rerun.rerun,
        retry_count=rerun.retry_count,
        from_step=rerun.from_step,
        redo=rerun.redo,
        dispatched=run_id is not None,
    )
