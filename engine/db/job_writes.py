"""The engine's writes to a job it runs: status transitions, ownership, step outputs, events.

All on the service path. A transition applies only if the job's current status allows it,
and only for the flow run that owns the job, so a superseded run cannot overwrite its
successor's state.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from engine.db.pool import PooledStore, query
from engine.db.rows import Row
from engine.jobs.transitions import JobStatus, sources_of


@dataclass(frozen=True)
class Transition:
    """One status change to write: the row update, its state_history entry and its event."""

    status: JobStatus
    step_id: str | None = None
    attempt: int | None = None
    retry_count: int | None = None
    max_retries: int | None = None
    next_retry_at: datetime | None = None
    error_message: str | None = None
    final_result: Any = None
    detail: Mapping[str, Any] | None = None


def history_entry(change: Transition) -> dict[str, Any]:
    """The state_history entry of a transition: its status and only the fields it sets."""
    entry: dict[str, Any] = {"status": change.status.value}
    if change.step_id is not None:
        entry["step_id"] = change.step_id
    if change.attempt is not None:
        entry["attempt"] = change.attempt
    if change.error_message is not None:
        entry["error"] = change.error_message
    if change.retry_count is not None:
        entry["retry_count"] = change.retry_count
    if change.next_retry_at is not None:
        entry["next_retry_at"] = change.next_retry_at.isoformat()
    if change.detail:
        entry.update(change.detail)
    return entry


class JobWrites(PooledStore):
    """The job store's write side for running jobs (mixed into JobStore)."""

    #: Most state_history entries kept on a job row (older ones are dropped).
    history_limit: int

    def set_flow_run(self, job_id: str, flow_run_id: str) -> None:
        """Store the Prefect flow-run id that executes this job."""
        self._fetchone("job_set_flow_run", {"job_id": job_id, "flow_run_id": flow_run_id})

    def claim(self, job_id: str, flow_run_id: str) -> bool:
        """Make `flow_run_id` the job's owner; False if the job is already finished."""
        return (
            self._fetchone("job_claim", {"job_id": job_id, "flow_run_id": flow_run_id}) is not None
        )

    def record_resubmission(
        self, conn: psycopg.Connection[Row], job_id: str, flow_run_id: str
    ) -> None:
        """Point the job at its new flow run and count the resubmission (caller's transaction)."""
        conn.execute(query("job_resubmit"), {"job_id": job_id, "flow_run_id": flow_run_id})

    def transition(
        self,
        job_id: str,
        change: Transition,
        *,
        conn: psycopg.Connection[Row] | None = None,
        flow_run_id: str | None = None,
        event: tuple[str, Mapping[str, Any]] | None = None,
    ) -> bool:
        """Apply a status change if the job's current status allows it; True if applied.

        `flow_run_id`: the writer's flow run; refused when another flow run owns the job.
        `conn` runs it on a connection the caller holds (inside its transaction and locks).
        `event` (kind, detail) is appended after the status event in the same statement.
        """
        with self._use(conn) as c:
            row = c.execute(
                query("job_transition"),
                {
                    "job_id": job_id,
                    "status": change.status.value,
                    "from_statuses": sources_of(change.status),
                    "step_id": change.step_id,
                    "attempt": change.attempt,
                    "retry_count": change.retry_count,
                    "max_retries": change.max_retries,
                    "next_retry_at": change.next_retry_at,
                    "error_message": change.error_message,
                    "final_result": Jsonb(change.final_result),
                    "entry": Jsonb(history_entry(change)),
                    "history_limit": self.history_limit,
                    "flow_run_id": flow_run_id,
                    "event_kind": event[0] if event else None,
                    "event_detail": Jsonb(dict(event[1])) if event else None,
                },
            ).fetchone()
        return row is not None

    def save_step_output(
        self,
        job_id: str,
        step_id: str,
        output: Any,
        *,
        attempt: int,
        detail: Mapping[str, Any] | None = None,
    ) -> bool:
        """Merge one step's output into step_data (atomic JSONB merge) and log success."""
        row = self._fetchone(
            "job_step_output",
            {
                "job_id": job_id,
                "step_id": step_id,
                "output": Jsonb(output),
                "attempt": attempt,
                "detail": Jsonb(dict(detail or {})),
            },
        )
        return row is not None

    def add_event(
        self,
        job_id: str,
        kind: str,
        *,
        step_id: str | None = None,
        attempt: int | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> None:
        """Append a job event without changing the job."""
        self._fetchone(
            "job_event_insert",
            {
                "job_id": job_id,
                "kind": kind,
                "step_id": step_id,
                "attempt": attempt,
                "detail": Jsonb(dict(detail or {})),
            },
        )

    def heartbeat(self, job_id: str) -> None:
        """Mark the job as alive (a flow run is working on it)."""
        with self.pool.connection() as conn:
            conn.execute(query("job_heartbeat"), {"job_id": job_id})
