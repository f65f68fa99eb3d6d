"""The job store: every read and write of jobs, workflows and transformers (psycopg 3 pool).

Two paths, never mixed:
- the **service path** (engine and API writes) runs as the connection's own role, which owns
  the tables or has BYPASSRLS, exactly like Supabase's service role;
- the **user path** (`as_user`) runs each query in a transaction that switches to role
  `authenticated` with `request.jwt.claims` set to the verified token's claims, as PostgREST
  does, so Row Level Security is the read barrier. User-facing reads exist only on this path.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, LiteralString

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from engine.db.queries import load_sql
from engine.errors import ConflictError, NotFoundError
from engine.jobs.transitions import JobStatus, sources_of

Row = dict[str, Any]


def _sql(name: str) -> LiteralString:
    # The text comes from our own package files, never from input.
    return load_sql(name)  # type: ignore[return-value,unused-ignore]


class UnknownUserError(NotFoundError):
    """The would-be owner of a job is not in auth.users (deleted while a token of theirs is
    still valid: Supabase access tokens outlive the user until they expire)."""


#: Foreign keys of public.jobs, and the error a violation of each means for the caller.
_JOB_FOREIGN_KEYS = {"jobs_user_id_fkey": "user", "jobs_workflow_id_fkey": "workflow"}


@dataclass(frozen=True)
class CreatedJob:
    """What POST /workflows/start answers, and whether this call created the job."""

    id: str
    status: str
    created_at: datetime
    created: bool


@dataclass(frozen=True)
class RunBundle:
    """A job with its workflow definition and transformer rows, loaded in one query."""

    job: Row
    definition: dict[str, Any]
    transformers: dict[str, dict[str, Any]]


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


class JobStore:
    """Reads and writes the engine's tables through a psycopg connection pool."""

    def __init__(
        self,
        database_url: str,
        *,
        min_size: int = 1,
        max_size: int = 10,
        history_limit: int = 100,
    ) -> None:
        self.history_limit = history_limit
        self.pool: ConnectionPool[psycopg.Connection[Row]] = ConnectionPool(
            database_url,
            min_size=min_size,
            max_size=max_size,
            kwargs={"row_factory": dict_row, "autocommit": True},
            connection_class=psycopg.Connection[Row],
            # A PostgreSQL restart (or a pooler dropping idle sessions) leaves every pooled
            # connection broken; without a check each one fails its next query once: a 500
            # from the API, a step that fails after its work was done. Checked at checkout,
            # a dead connection is replaced instead (one empty round trip per checkout).
            check=ConnectionPool.check_connection,
            open=True,
            name="supaflow",
        )

    def close(self) -> None:
        """Close every pooled connection."""
        self.pool.close()

    # -- plumbing -------------------------------------------------------------------------

    def _fetchall(self, name: str, params: Mapping[str, Any]) -> list[Row]:
        with self.pool.connection() as conn:
            return conn.execute(_sql(name), params).fetchall()

    def _fetchone(self, name: str, params: Mapping[str, Any]) -> Row | None:
        with self.pool.connection() as conn:
            return conn.execute(_sql(name), params).fetchone()

    @contextmanager
    def _use(self, conn: psycopg.Connection[Row] | None) -> Iterator[psycopg.Connection[Row]]:
        if conn is not None:
            yield conn
        else:
            with self.pool.connection() as pooled:
                yield pooled

    @contextmanager
    def as_user(self, claims: Mapping[str, Any]) -> Iterator[psycopg.Connection[Row]]:
        """A connection inside a transaction running as `authenticated` with these claims.

        `set_config(..., true)` is transaction-local, so nothing leaks to the next user of
        the pooled connection, even on error (the transaction rolls back).
        """
        with self.pool.connection() as conn, conn.transaction():
            conn.execute(_sql("user_session_begin"), {"claims": json.dumps(dict(claims))})
            yield conn

    # -- definitions ----------------------------------------------------------------------

    def get_workflow(self, workflow_id: str) -> Row:
        """A workflow row (service path). NotFoundError if it does not exist."""
        row = self._fetchone("workflow_get", {"workflow_id": workflow_id})
        if row is None:
            raise NotFoundError(f"workflow '{workflow_id}' does not exist")
        return row

    def list_workflows_for_user(self, claims: Mapping[str, Any]) -> list[Row]:
        """Workflows the caller can start, read under RLS."""
        with self.as_user(claims) as conn:
            return conn.execute(_sql("user_workflows_list")).fetchall()

    def transformer_ids(self) -> list[str]:
        """Every stored transformer id."""
        return [r["id"] for r in self._fetchall("transformer_ids", {})]

    def upsert_workflow(self, workflow_id: str, description: str | None, definition: Any) -> bool:
        """Create or replace a workflow; True when the row changed."""
        row = self._fetchone(
            "workflow_upsert",
            {"id": workflow_id, "description": description, "definition": Jsonb(definition)},
        )
        return row is not None

    def upsert_transformer(
        self,
        transformer_id: str,
        type_: str,
        description: str | None,
        config: Any,
        target_function: str,
    ) -> bool:
        """Create or replace a transformer; True when the row changed."""
        row = self._fetchone(
            "transformer_upsert",
            {
                "id": transformer_id,
                "type": type_,
                "description": description,
                "config": Jsonb(config),
                "target_function": target_function,
            },
        )
        return row is not None

    # -- jobs: creation and dispatch ------------------------------------------------------

    def create_job(
        self,
        *,
        user_id: str,
        workflow_id: str,
        input_data: Any,
        max_retries: int | None = None,
        idempotency_key: str | None = None,
        request_hash: str | None = None,
    ) -> CreatedJob:
        """Insert a pending job and its `created` event in one statement.

        With an idempotency key, the same key and request hash return the existing job; the
        same key with another request hash raises ConflictError. An owner missing from
        auth.users raises UnknownUserError; a workflow deleted meanwhile, NotFoundError.
        """
        params = {
            "user_id": user_id,
            "workflow_id": workflow_id,
            "input_data": Jsonb(input_data),
            "max_retries": 3 if max_retries is None else max_retries,
            "idempotency_key": idempotency_key,
            "request_hash": request_hash,
        }
        # A concurrent insert with the same key commits after our snapshot; then the
        # statement returns nothing and a second try sees the winner.
        for _ in range(2):
            try:
                row = self._fetchone("job_insert", params)
            except psycopg.errors.ForeignKeyViolation as exc:
                missing = _JOB_FOREIGN_KEYS.get(exc.diag.constraint_name or "")
                if missing == "user":
                    raise UnknownUserError(f"user '{user_id}' does not exist") from None
                if missing == "workflow":
                    raise NotFoundError(f"workflow '{workflow_id}' does not exist") from None
                raise
            if row is not None:
                break
        if row is None:  # pragma: no cover - needs a third concurrent writer
            raise ConflictError("a request with this Idempotency-Key is in progress")
        if not row["created"] and row["request_hash"] != request_hash:
            raise ConflictError(
                "Idempotency-Key was already used with a different request body",
                details={"job_id": str(row["id"])},
            )
        return CreatedJob(
            id=str(row["id"]),
            status=row["status"],
            created_at=row["created_at"],
            created=bool(row["created"]),
        )

    def set_flow_run(self, job_id: str, flow_run_id: str) -> None:
        """Store the Prefect flow-run id that executes this job."""
        self._fetchone("job_set_flow_run", {"job_id": job_id, "flow_run_id": flow_run_id})

    def dispatch_pending(
        self,
        start: Callable[[str], str | None],
        *,
        grace_seconds: float,
        limit: int = 100,
    ) -> list[tuple[str, str | None]]:
        """Hand pending jobs that never reached the orchestrator to `start`.

        The jobs stay row-locked (FOR UPDATE SKIP LOCKED) while `start` runs, so two
        dispatchers never take the same job. `start` returns the flow-run id or None (still
        unreachable: the job stays pending for the next pass).
        """
        outcomes: list[tuple[str, str | None]] = []
        with self.pool.connection() as conn, conn.transaction():
            rows = conn.execute(
                _sql("jobs_pending_undispatched"),
                {"grace_seconds": grace_seconds, "limit": limit},
            ).fetchall()
            for row in rows:
                job_id = str(row["id"])
                flow_run_id = start(job_id)
                if flow_run_id is not None:
                    conn.execute(
                        _sql("job_set_flow_run"), {"job_id": job_id, "flow_run_id": flow_run_id}
                    )
                outcomes.append((job_id, flow_run_id))
        return outcomes

    # -- jobs: user reads (RLS) -----------------------------------------------------------

    def get_job_for_user(self, claims: Mapping[str, Any], job_id: str) -> Row:
        """One job as the caller sees it under RLS; NotFoundError for missing or foreign."""
        with self.as_user(claims) as conn:
            row = conn.execute(_sql("user_job_get"), {"job_id": job_id}).fetchone()
        if row is None:
            raise NotFoundError(f"job '{job_id}' not found")
        return row

    def list_jobs_for_user(
        self,
        claims: Mapping[str, Any],
        *,
        limit: int,
        status: str | None = None,
        workflow_id: str | None = None,
        cursor: tuple[datetime, str] | None = None,
    ) -> list[Row]:
        """The caller's jobs, newest first, under RLS; `cursor` is the last (created_at, id)."""
        params = {
            "user_id": claims.get("sub"),
            "limit": limit,
            "status": status,
            "workflow_id": workflow_id,
            "cursor_at": cursor[0] if cursor else None,
            "cursor_id": cursor[1] if cursor else None,
        }
        with self.as_user(claims) as conn:
            return conn.execute(_sql("user_jobs_list"), params).fetchall()

    # -- jobs: engine side ----------------------------------------------------------------

    def get_job(self, job_id: str) -> Row:
        """One job row (service path)."""
        row = self._fetchone("job_get_service", {"job_id": job_id})
        if row is None:
            raise NotFoundError(f"job '{job_id}' not found")
        return row

    def load_run_bundle(self, job_id: str) -> RunBundle:
        """The job, its workflow definition and its transformers, in one query."""
        row = self._fetchone("run_bundle", {"job_id": job_id})
        if row is None:
            raise NotFoundError(f"job '{job_id}' not found")
        definition = row.pop("definition")
        transformers = row.pop("transformers")
        return RunBundle(job=row, definition=definition, transformers=transformers)

    def transition(
        self,
        job_id: str,
        change: Transition,
        *,
        conn: psycopg.Connection[Row] | None = None,
        flow_run_id: str | None = None,
    ) -> bool:
        """Apply a status change if the job's current status allows it; True if applied.

        `flow_run_id`: the writer's flow run; refused when another flow run owns the job.
        `conn` runs it on a connection the caller holds (inside its transaction and locks).
        """
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
        with self._use(conn) as c:
            row = c.execute(
                _sql("job_transition"),
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
                    "entry": Jsonb(entry),
                    "history_limit": self.history_limit,
                    "flow_run_id": flow_run_id,
                },
            ).fetchone()
        return row is not None

    @contextmanager
    def locked_in_flight(
        self, *, grace_seconds: float, limit: int = 100
    ) -> Iterator[tuple[psycopg.Connection[Row], list[Row]]]:
        """In one transaction: the in-flight jobs, row-locked (SKIP LOCKED) until it ends."""
        with self.pool.connection() as conn, conn.transaction():
            rows = conn.execute(
                _sql("jobs_in_flight"), {"grace_seconds": grace_seconds, "limit": limit}
            ).fetchall()
            yield conn, rows

    def record_resubmission(
        self, conn: psycopg.Connection[Row], job_id: str, flow_run_id: str
    ) -> None:
        """Point the job at its new flow run and count the resubmission (caller's transaction)."""
        conn.execute(_sql("job_resubmit"), {"job_id": job_id, "flow_run_id": flow_run_id})

    def claim(self, job_id: str, flow_run_id: str) -> bool:
        """Make `flow_run_id` the job's owner; False if the job is already finished."""
        return (
            self._fetchone("job_claim", {"job_id": job_id, "flow_run_id": flow_run_id}) is not None
        )

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
            conn.execute(_sql("job_heartbeat"), {"job_id": job_id})

    def events(self, job_id: str) -> list[Row]:
        """Every event of a job in order (service path; tests and operators)."""
        return self._fetchall("job_events_list", {"job_id": job_id})

    def statuses(self, job_ids: Sequence[str]) -> dict[str, str]:
        """Current status of several jobs (service path)."""
        rows = self._fetchall("job_statuses", {"job_ids": list(job_ids)})
        return {r["id"]: r["status"] for r in rows}
