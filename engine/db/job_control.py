"""The store's side of job control: a cancel or a rerun applied to the job row, in one
transaction each, the job row-locked and owned by the caller (service path; another user's
job is not found, as under RLS). The decisions are engine.jobs.control's; creating or
cancelling the flow run in Prefect is the caller's (engine.dispatch), after the commit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb
from pydantic import ValidationError

from engine.db.job_writes import Transition
from engine.db.pool import query
from engine.db.store import JobStore
from engine.definitions.graph import dependencies
from engine.definitions.models import WorkflowDefinition
from engine.errors import ConflictError, InputValidationError, NotFoundError
from engine.jobs.control import (
    CANCELLED_KIND,
    CancelAction,
    CancelTarget,
    cancel_action,
    downstream,
    rerun_key,
)
from engine.jobs.transitions import JobStatus, rerun_sources


@dataclass(frozen=True)
class CancelOutcome:
    """What a cancel request did: the action, the job's status after it, since when the
    cancel is requested, and the flow run to set Cancelled in Prefect (FAIL_NOW only)."""

    action: CancelAction
    status: JobStatus
    cancel_requested_at: datetime | None
    flow_run_id: str | None


@dataclass(frozen=True)
class RerunOutcome:
    """A rerun recorded: its number, the steps it redoes, and its flow run's key."""

    job_id: str
    rerun: int
    retry_count: int
    from_step: str | None
    redo: list[str]

    @property
    def idempotency_key(self) -> str:
        """The idempotency key of the rerun's flow run."""
        return rerun_key(self.job_id, self.rerun)


def cancel_message(by: str) -> str:
    """The error_message of a job its owner cancelled."""
    return f"cancelled by its owner (user {by})"


def _not_found(job_id: str) -> NotFoundError:
    return NotFoundError(f"job '{job_id}' not found")


def cancel_job(store: JobStore, job_id: str, user_id: str) -> CancelOutcome:
    """Cancel the caller's job: fail it now when no step is live, else record the request
    for its flow run (idempotent while pending). ConflictError for a finished job."""
    with store.pool.connection() as conn, conn.transaction():
        row = conn.execute(
            query("job_cancel_lock"), {"job_id": job_id, "user_id": user_id}
        ).fetchone()
        if row is None:
            raise _not_found(job_id)
        status = JobStatus(row["status"])
        action = cancel_action(
            CancelTarget(
                status=status,
                waiting=bool(row["waiting"]),
                retry_rescheduled=bool(row["retry_rescheduled"]),
                cancel_requested=row["cancel_requested_at"] is not None,
            )
        )
        if action is CancelAction.FINISHED:
            raise ConflictError(
                f"job '{job_id}' is already {status.value}: there is nothing to cancel",
                details={"status": status.value},
            )
        if action is CancelAction.ALREADY_REQUESTED:
            return CancelOutcome(action, status, row["cancel_requested_at"], None)
        fail_now = action is CancelAction.FAIL_NOW
        requested = conn.execute(
            query("job_cancel_request"),
            {"job_id": job_id, "by": user_id, "action": action.value, "fail_now": fail_now},
        ).fetchone()
        assert requested is not None  # the row is locked: it cannot have gone
        if fail_now:
            store.transition(
                job_id,
                Transition(
                    status=JobStatus.FAILED,
                    error_message=cancel_message(user_id),
                    detail={"kind": CANCELLED_KIND, "cancelled_by": user_id, "at_once": True},
                ),
                conn=conn,
            )
            status = JobStatus.FAILED
        return CancelOutcome(
            action,
            status,
            requested["cancel_requested_at"],
            row["flow_run_id"] if fail_now else None,
        )


def _steps(definition: Any) -> dict[str, list[str]]:
    """Each step of a pinned definition and its direct dependencies (definition order)."""
    try:
        return dependencies(WorkflowDefinition.model_validate(definition))
    except ValidationError:
        # A version stored before a model change: its ids in order, each after the previous.
        ids = [s.get("id") for s in (definition or {}).get("steps", []) if isinstance(s, dict)]
        return {str(s): [str(p)] if p else [] for p, s in zip([None, *ids], ids, strict=False)}


def rerun_job(
    store: JobStore, job_id: str, user_id: str, from_step: str | None = None
) -> RerunOutcome:
    """Move the caller's failed job back to pending for a rerun, keeping the outputs of its
    finished steps except `from_step`'s and its downstream steps'.

    ConflictError unless the job is failed; InputValidationError naming `from_step` when it
    is not a step of the job's pinned workflow version.
    """
    with store.pool.connection() as conn, conn.transaction():
        row = conn.execute(
            query("job_rerun_lock"), {"job_id": job_id, "user_id": user_id}
        ).fetchone()
        if row is None:
            raise _not_found(job_id)
        if row["status"] not in rerun_sources():
            raise ConflictError(
                f"job '{job_id}' is {row['status']}: only a failed job can be rerun",
                details={"status": row["status"]},
            )
        steps = _steps(row["definition"])
        if from_step is not None and from_step not in steps:
            raise InputValidationError(
                f"from_step '{from_step}' is not a step of the job's workflow version",
                details=[
                    {"location": "body.from_step", "message": "unknown step", "steps": list(steps)}
                ],
            )
        redo = downstream(steps, from_step) if from_step is not None else []
        rerun = int(row["reruns"]) + 1
        entry = {"status": JobStatus.PENDING.value, "rerun": rerun, "from_step": from_step}
        detail = {"rerun": rerun, "from_step": from_step, "redo": redo, "by": user_id}
        updated = conn.execute(
            query("job_rerun"),
            {
                "job_id": job_id,
                "from_statuses": rerun_sources(),
                "redo": redo,
                "entry": Jsonb(entry),
                "detail": Jsonb({**detail, "idempotency_key": rerun_key(job_id, rerun)}),
                "history_limit": store.history_limit,
            },
        ).fetchone()
        assert updated is not None  # locked and checked failed above
    return RerunOutcome(job_id, rerun, int(updated["retry_count"]), from_step, redo)


def cancel_flag(store: JobStore, job_id: str) -> tuple[bool, str | None]:
    """Whether the job's owner asked to cancel it, and who (the flow's step-boundary check)."""
    row = _cancel_row(store, job_id)
    if row is None or row["cancel_requested_at"] is None:
        return False, None
    return True, row["cancelled_by"]


def cancelled_before_start(store: JobStore, job_id: str) -> str | None:
    """Who cancelled the job, if it is failed by a cancel ("" when unknown); None otherwise."""
    row = _cancel_row(store, job_id)
    if row is None or row["status"] != JobStatus.FAILED.value:
        return None
    return None if row["cancel_requested_at"] is None else row["cancelled_by"] or ""


def _cancel_row(store: JobStore, job_id: str) -> dict[str, Any] | None:
    with store.pool.connection() as conn:
        return conn.execute(query("job_cancel_flag"), {"job_id": job_id}).fetchone()


def dispatch_reruns(
    store: JobStore,
    start: Callable[[str, str], str | None],
    *,
    grace_seconds: float,
    limit: int = 100,
) -> list[tuple[str, str | None]]:
    """Create the flow runs of reruns the API could not hand to Prefect, oldest first:
    `start(job_id, idempotency_key)` returns the run id or None (still unreachable: the job
    stays pending for the next pass). Locked (SKIP LOCKED) while `start` runs; the run ids
    are recorded in the same transaction, as engine.db.store.JobStore.dispatch_pending does."""
    with store.pool.connection() as conn, conn.transaction():
        rows = conn.execute(
            query("jobs_rerun_undispatched"), {"grace_seconds": grace_seconds, "limit": limit}
        ).fetchall()
        runs = [
            (str(r["id"]), start(str(r["id"]), rerun_key(str(r["id"]), r["rerun"]))) for r in rows
        ]
        started = [{"job_id": j, "flow_run_id": run} for j, run in runs if run is not None]
        if started:
            with conn.cursor() as cur:
                cur.executemany(query("job_set_flow_run"), started)
    return runs
