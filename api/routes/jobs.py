"""GET /jobs and GET /jobs/{job_id}: the caller's own jobs, read under row-level security."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query

from api.cursor import decode_cursor, encode_cursor
from api.deps import ReadPrincipal, StoreDep
from api.models import Job, JobList, JobStatusName
from api.responses import USER_CHECK, error_responses
from api.strict_input import StrictJSONRoute

router = APIRouter(tags=["jobs"], route_class=StrictJSONRoute)


@router.get(
    "/jobs/{job_id}",
    response_model=Job,
    summary="Get one of your jobs",
    responses=error_responses(*USER_CHECK, 404),
)
def get_job(job_id: UUID, principal: ReadPrincipal, store: StoreDep) -> Job:
    """The full job; another user's job and a missing one are both 404."""
    return Job.from_row(store.get_job_for_user(principal.claims, str(job_id)))


@router.get(
    "/jobs",
    response_model=JobList,
    summary="List your jobs, newest first",
    responses=error_responses(*USER_CHECK),
)
def list_jobs(
    principal: ReadPrincipal,
    store: StoreDep,
    limit_: Annotated[int, Query(alias="limit", ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    status: Annotated[JobStatusName | None, Query()] = None,
    workflow_id: Annotated[str | None, Query(max_length=200)] = None,
) -> JobList:
    """A page of the caller's jobs; filters by status and workflow_id."""
    rows = store.list_jobs_for_user(
        principal.claims,
        limit=limit_ + 1,
        status=status,
        workflow_id=workflow_id,
        cursor=decode_cursor(cursor) if cursor else None,
    )
    page = rows[:limit_]
    next_cursor = (
        encode_cursor(page[-1]["created_at"], str(page[-1]["id"])) if len(rows) > limit_ else None
    )
    return JobList(jobs=[Job.from_row(r) for r in page], next_cursor=next_cursor)
