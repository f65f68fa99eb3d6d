"""The job callbacks outbox, public.job_callbacks (migration 20261207000300), service path.

Rows are inserted by the database itself (trigger jobs_enqueue_callback) when a job with an
`on_finish` target completes or fails. `claim_due` takes the due ones for an attempt (FOR
UPDATE SKIP LOCKED, then a lease: two passes at once never send one twice); `record` writes
each attempt's outcome. Every statement is a bound-parameter query from engine/db/sql.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from engine.db.pool import query
from engine.db.rows import Row
from engine.jobs.callbacks import REQUEST_TIMEOUT_SECONDS, Callback, Outcome

#: How long a claimed attempt keeps its row from other passes (well over one attempt's time).
LEASE_SECONDS = REQUEST_TIMEOUT_SECONDS * 6


def callback_from_row(row: Row) -> Callback:
    """A claimed callback from one row of callback_claim_due.sql."""
    return Callback(
        id=int(row["id"]),
        job_id=str(row["job_id"]),
        end_number=int(row["end_number"]),
        workflow_id=str(row["workflow_id"]),
        workflow_version=row["workflow_version"],
        url=str(row["url"]),
        secret_env=row["secret_env"],
        max_attempts=int(row["max_attempts"]),
        retry_delay_seconds=float(row["retry_delay_seconds"]),
        job_status="completed" if row["job_status"] == "completed" else "failed",
        final_result=row["final_result"],
        error_message=row["error_message"],
        error_kind=row["error_kind"],
        finished_at=row["finished_at"],
        attempt=int(row["attempt"]),
    )


class CallbackStore:
    """Claims and records job callbacks through a pool."""

    def __init__(self, pool: ConnectionPool[psycopg.Connection[Row]]) -> None:
        self.pool = pool

    def claim_due(
        self, *, job_id: str | None = None, limit: int = 20, lease_seconds: float = LEASE_SECONDS
    ) -> list[Callback]:
        """Claim up to `limit` due callbacks (only `job_id`'s, if given) for one attempt each;
        the attempt is counted now. Callbacks left without an attempt end failed first."""
        with self.pool.connection() as conn, conn.transaction():
            conn.execute(query("callback_expire"))
            rows = conn.execute(
                query("callback_claim_due"),
                {"job_id": job_id, "limit": limit, "lease_seconds": lease_seconds},
            ).fetchall()
        return [callback_from_row(row) for row in rows]

    def record(
        self,
        callback: Callback,
        outcome: Outcome,
        *,
        error: str | None = None,
        response_code: int | None = None,
    ) -> bool:
        """Write one attempt's outcome; False when the attempt no longer holds the row."""
        params: dict[str, Any] = {
            "id": callback.id,
            "attempt": callback.attempt,
            "status": outcome.status,
            "delay_seconds": outcome.delay_seconds or 0.0,
            "error": error,
            "response_code": response_code,
        }
        with self.pool.connection() as conn:
            row = conn.execute(query("callback_record"), params).fetchone()
        return row is not None

    def for_job(self, job_id: str) -> list[Row]:
        """Every callback of a job, oldest first (tests and operators)."""
        with self.pool.connection() as conn:
            return conn.execute(query("callbacks_for_job"), {"job_id": job_id}).fetchall()
