"""The store's side of job deadlines (jobs.deadline_at, migration 20261207000800).

A workflow's `timeout_seconds` bounds the whole job: the deadline is set when the job is
created (and afresh by a rerun), kept across step retries, rescheduled retries, waits and
resubmissions. Here: maintenance's transaction that fails every unfinished job past it, and
the deadline a flow run checks at its step boundaries.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from engine.db.job_writes import Transition
from engine.db.pool import query
from engine.db.store import JobStore
from engine.jobs.transitions import TERMINAL, JobStatus

#: The error kind of a job that passed its deadline (the same kind as a step's timeout).
TIMEOUT_KIND = "timeout"


@dataclass(frozen=True)
class TimedOut:
    """A job maintenance failed at its deadline, and the flow run that ran it (if any)."""

    job_id: str
    flow_run_id: str | None
    message: str


def timeout_message(timeout_seconds: Any, deadline_at: datetime | None) -> str:
    """The error_message of a job past its deadline, naming the job timeout."""
    seconds = (
        f"{float(timeout_seconds):g} s"
        if isinstance(timeout_seconds, (int, float)) and not isinstance(timeout_seconds, bool)
        else "set for the job"
    )
    at = f" at {deadline_at.isoformat()}" if deadline_at is not None else ""
    return f"the job timed out: its workflow's timeout_seconds ({seconds}) passed{at}"


def timeout_transition(message: str, timeout_seconds: Any) -> Transition:
    """The job's failure at its deadline (error kind `timeout`, with the timeout)."""
    return Transition(
        status=JobStatus.FAILED,
        error_message=message,
        detail={"kind": TIMEOUT_KIND, "job_timeout_seconds": timeout_seconds},
    )


def fail_past_deadline(store: JobStore, limit: int = 100) -> list[TimedOut]:
    """In one transaction, fail every unfinished job past its deadline (oldest deadline
    first, at most `limit`) as `timeout` and expire its pending waits.

    The jobs are row-locked with SKIP LOCKED and each failure is guarded by the job's status,
    so passes running at once fail each job once. The flow runs are the caller's to stop,
    after the commit.
    """
    statuses = sorted(s.value for s in JobStatus if s not in TERMINAL)
    failed: list[TimedOut] = []
    with store.pool.connection() as conn, conn.transaction():
        rows = conn.execute(
            query("jobs_past_deadline"), {"statuses": statuses, "limit": limit}
        ).fetchall()
        for row in rows:
            job_id = str(row["id"])
            message = timeout_message(row["timeout_seconds"], row["deadline_at"])
            change = timeout_transition(message, row["timeout_seconds"])
            if store.transition(job_id, change, conn=conn):
                conn.execute(query("job_deadline_expire_waits"), {"job_id": job_id})
                run = row["prefect_flow_run_id"]
                failed.append(TimedOut(job_id, str(run) if run else None, message))
    return failed


@dataclass(frozen=True)
class JobDeadline:
    """A job's deadline as its flow run sees it: when, and how many seconds were left when
    it was read (by the database's clock, so the worker's clock does not matter)."""

    at: datetime
    seconds_left: float
    timeout_seconds: Any


def job_deadline(store: JobStore, job_id: str) -> JobDeadline | None:
    """The job's deadline; None when it has none (or the job is unknown)."""
    row = store._fetchone("job_deadline", {"job_id": job_id})
    if row is None or row["deadline_at"] is None:
        return None
    return JobDeadline(row["deadline_at"], float(row["seconds_left"]), row["timeout_seconds"])
