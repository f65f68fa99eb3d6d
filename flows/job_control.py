"""Job control inside the flows: a cancel requested while steps run, and maintenance's part.

- `CancelWatch`: `run_workflow`'s check at each step boundary (flows/run_workflow.py
  `_execute`): once the owner asked to cancel (jobs.cancel_requested_at), no new step starts,
  the running ones finish and their outputs are stored, then `JobCancelled` ends the run.
- `finish_cancelled`: the job fails with error kind `cancelled` and the flow returns a
  Prefect Cancelled state saying who cancelled; `finished_state` is that state for a run
  that starts after its job was cancelled.
- `cancel_stopped_job`: maintenance fails a job whose run stopped (crashed, lost, silent) or
  is parked (scheduled, paused) while a cancel was requested, instead of resubmitting it.
- `dispatch_reruns`: maintenance creates the flow runs of reruns Prefect could not take when
  they were asked for.
"""

from __future__ import annotations

import logging
from typing import Any
from uuid import UUID

import psycopg
from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.objects import State
from prefect.states import Cancelled

from engine.db import job_control
from engine.db.job_writes import Transition
from engine.db.rows import Row
from engine.db.store import JobStore
from engine.dispatch import RunStarter
from engine.jobs.control import CANCELLED_KIND
from engine.jobs.transitions import JobStatus

RunLogger = logging.Logger | logging.LoggerAdapter[logging.Logger]


class JobCancelled(Exception):  # noqa: N818 - control flow, not an error
    """The job's owner cancelled it; the flow run stopped at a step boundary."""

    def __init__(self, job_id: str, by: str | None) -> None:
        super().__init__(f"job '{job_id}' was cancelled by {_who(by)}")
        self.job_id = job_id
        self.by = by


def _who(by: str | None) -> str:
    return f"its owner (user {by})" if by else "its owner"


class CancelWatch:
    """Reads the job's cancel request at each step boundary; once seen, it stays seen."""

    def __init__(self, store: JobStore, job_id: str) -> None:
        self._store = store
        self._job_id = job_id
        self._by: str | None = None
        self.requested = False

    def check(self) -> bool:
        """True once the owner asked to cancel (one small query until then)."""
        if not self.requested:
            self.requested, self._by = job_control.cancel_flag(self._store, self._job_id)
        return self.requested

    def raise_if_requested(self) -> None:
        """JobCancelled if a cancel was requested by now (the last boundary: after every
        running step finished, before a failure, a rescheduled retry or the result)."""
        if self.check():
            raise JobCancelled(self._job_id, self._by)


def finish_cancelled(
    store: JobStore,
    job_id: str,
    flow_run_id: str | None,
    cancelled: JobCancelled,
    steps_done: list[str],
    logger: RunLogger,
) -> State[Any]:
    """Fail the job as cancelled (its finished steps' outputs stay stored) and return the
    Cancelled state the flow run ends in. A job the API already failed stays as it is."""
    message = f"job cancelled by {_who(cancelled.by)} at a step boundary"
    store.transition(
        job_id,
        Transition(
            status=JobStatus.FAILED,
            error_message=job_control.cancel_message(cancelled.by or "unknown"),
            detail={"kind": CANCELLED_KIND, "cancelled_by": cancelled.by, "steps_done": steps_done},
        ),
        flow_run_id=flow_run_id,
    )
    logger.warning(
        message, extra={"job_id": job_id, "status": "failed", "error_kind": CANCELLED_KIND}
    )
    return Cancelled(message=message)


def finished_state(store: JobStore, job_id: str) -> State[Any] | None:
    """The end of a flow run that found its job finished: Cancelled when a cancel failed the
    job (its run could not be set Cancelled then, Prefect being out of reach), else None (the
    run completes, having nothing to do)."""
    by = job_control.cancelled_before_start(store, job_id)
    if by is None:
        return None
    return Cancelled(message=f"job cancelled by {_who(by)} before this flow run started")


def cancel_stopped_job(
    store: JobStore,
    conn: psycopg.Connection[Row],
    client: SyncPrefectClient,
    job_id: str,
    flow_run: tuple[str | None, bool],
    reason: str,
) -> None:
    """Maintenance: fail a job whose run stopped or is parked while a cancel was requested
    (never resubmitted), ending a parked run Cancelled in Prefect too. `flow_run`: its id, and
    whether Prefect still has it not ended."""
    run_id, open_in_prefect = flow_run
    if run_id is not None and open_in_prefect:
        client.set_flow_run_state(
            UUID(run_id), Cancelled(message=f"supaflow maintenance: {reason}"), force=True
        )
    store.transition(
        job_id,
        Transition(
            status=JobStatus.FAILED,
            error_message=f"cancelled by its owner; {reason}",
            detail={"kind": CANCELLED_KIND, "decision": "cancel"},
        ),
        conn=conn,
    )


def dispatch_reruns(
    store: JobStore, starter: RunStarter, *, grace_seconds: float, limit: int = 100
) -> list[tuple[str, str | None]]:
    """Create the flow runs of reruns left pending without one, each with its rerun's key."""
    return job_control.dispatch_reruns(
        store,
        lambda job_id, key: starter.try_start(job_id, idempotency_key=key),
        grace_seconds=grace_seconds,
        limit=limit,
    )
