"""The job store: every read and write of jobs, workflows and transformers (psycopg 3 pool).

`JobStore` is one object with three parts: the pool and the service/user paths
(engine.db.pool), the writes of running jobs (engine.db.job_writes), and, here, definitions,
job creation and dispatch, and the reads. What the engine reads comes back as typed rows
(engine.db.rows); what the API serialises itself (its job reads) comes back as dicts.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Protocol

import psycopg
from psycopg.types.json import Jsonb

from engine.db.job_writes import JobWrites, Transition
from engine.db.pool import query
from engine.db.rows import (
    CreatedJob,
    InFlightJob,
    PendingJob,
    Row,
    RunBundle,
    job_max_retries,
)
from engine.errors import ConflictError, NotFoundError

#: The store's public names (Transition and the rows are defined next to their use).
__all__ = [
    "CreatedJob",
    "InFlightJob",
    "JobStore",
    "PendingJob",
    "Row",
    "RunBundle",
    "StartRun",
    "Transition",
    "UnknownUserError",
]


class StartRun(Protocol):
    """Creates a pending job's flow run (engine.dispatch.RunStarter.try_start): the run's id,
    or None when Prefect refused or could not be reached. `scheduled_for` is passed only for
    a delayed start: the run is created Scheduled for that time."""

    def __call__(self, job_id: str, /, *, scheduled_for: datetime = ...) -> str | None: ...


class UnknownUserError(NotFoundError):
    """The would-be owner of a job is not in auth.users (deleted while a token of theirs is
    still valid: Supabase access tokens outlive the user until they expire)."""


#: Foreign keys of public.jobs, and the error a violation of each means for the caller.
_JOB_FOREIGN_KEYS = {
    "jobs_user_id_fkey": "user",
    "jobs_workflow_id_fkey": "workflow",
    "jobs_workflow_version_fkey": "version",
}


class JobStore(JobWrites):
    """Reads and writes the engine's tables through a psycopg connection pool."""

    def __init__(
        self,
        database_url: str,
        *,
        min_size: int = 1,
        max_size: int = 10,
        history_limit: int = 100,
    ) -> None:
        super().__init__(database_url, min_size=min_size, max_size=max_size)
        self.history_limit = history_limit

    # -- definitions ----------------------------------------------------------------------

    def get_workflow(self, workflow_id: str, version: int | None = None) -> Row:
        """One version of a workflow, by default its default version, with the workflow's
        `enabled`, `default_version` and `latest_version` (service path). NotFoundError
        naming the workflow or the version when either does not exist."""
        row = self._fetchone("workflow_get", {"workflow_id": workflow_id, "version": version})
        if row is not None:
            return row
        if version is not None and self._fetchone("workflow_exists", {"workflow_id": workflow_id}):
            raise NotFoundError(f"workflow '{workflow_id}' has no version {version}")
        raise NotFoundError(f"workflow '{workflow_id}' does not exist")

    def list_workflows_for_user(
        self, claims: Mapping[str, Any], workflow_id: str | None = None
    ) -> list[Row]:
        """Workflows the caller can start (only `workflow_id`, if given), read under RLS."""
        with self.as_user(claims) as conn:
            return conn.execute(
                query("user_workflows_list"), {"workflow_id": workflow_id}
            ).fetchall()

    def workflow_versions_for_user(
        self, claims: Mapping[str, Any], workflow_id: str, version: int | None = None
    ) -> list[Row]:
        """Every version of a workflow (or only `version`), oldest first, read under RLS
        (empty: none visible)."""
        with self.as_user(claims) as conn:
            return conn.execute(
                query("user_workflow_versions"), {"workflow_id": workflow_id, "version": version}
            ).fetchall()

    def transformer_ids(self) -> list[str]:
        """Every stored transformer id."""
        return [r["id"] for r in self._fetchall("transformer_ids", {})]

    def upsert_workflow(
        self,
        workflow_id: str,
        description: str | None,
        definition: Any,
        *,
        default_version: int | None = None,
        enabled: bool = True,
    ) -> int | None:
        """Create or change a workflow (a changed definition is a new version); its version
        now, or None when nothing differed."""
        row = self._fetchone(
            "workflow_upsert",
            {
                "id": workflow_id,
                "description": description,
                "definition": Jsonb(definition),
                "default_version": default_version,
                "enabled": enabled,
            },
        )
        return None if row is None else int(row["version"])

    def upsert_transformer(
        self,
        transformer_id: str,
        type_: str,
        description: str | None,
        config: Any,
        target_function: str,
    ) -> int | None:
        """Create or change a transformer (a changed type, config or target_function is a new
        version); its version now, or None when nothing differed."""
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
        return None if row is None else int(row["version"])

    def definition_history(self, definition_id: str) -> list[Row]:
        """Every version of the workflow and of the transformer with this id, oldest first."""
        return self._fetchall("definition_history", {"id": definition_id})

    def definitions_current(self) -> list[Row]:
        """Every workflow and transformer as stored now, with its version."""
        return self._fetchall("definitions_current", {})

    # -- jobs: creation and dispatch ------------------------------------------------------

    def create_job(
        self,
        *,
        user_id: str | None,
        workflow_id: str,
        input_data: Any,
        max_retries: int | None = None,
        idempotency_key: str | None = None,
        request_hash: str | None = None,
        workflow_version: int | None = None,
        on_finish: Mapping[str, Any] | None = None,
        start_at: datetime | None = None,
        delay_seconds: float | None = None,
    ) -> CreatedJob:
        """Insert a pending job and its `created` event in one statement, pinned to
        `workflow_version` (None: the workflow's default) and the current version of each
        transformer that version names (migration 20261203000300). `on_finish` is the job's
        resolved callback target (engine.jobs.callbacks.resolve_target), or None. `start_at`,
        or `delay_seconds` from the database clock, is a delayed start: the job's
        `scheduled_for`, written by the same insert (neither: it starts at once).

        With an idempotency key, the same key and request hash return the existing job; the
        same key with another request hash raises ConflictError. An owner missing from
        auth.users raises UnknownUserError; a workflow or version that does not exist (or was
        deleted meanwhile), NotFoundError. `user_id` None is a job owned by the app (an
        operator schedule's firing), seen by no user.
        """
        params = {
            "user_id": user_id,
            "workflow_id": workflow_id,
            "workflow_version": workflow_version,
            "input_data": Jsonb(input_data),
            "max_retries": job_max_retries(max_retries),
            "idempotency_key": idempotency_key,
            "request_hash": request_hash,
            "on_finish": None if on_finish is None else Jsonb(dict(on_finish)),
            "start_at": start_at,
            "delay_seconds": delay_seconds,
        }
        # A concurrent insert with the same key commits after our snapshot; then the
        # statement returns nothing and a second try sees the winner.
        for _ in range(2):
            try:
                row = self._fetchone("job_insert", params)
            except psycopg.errors.ForeignKeyViolation as exc:
                _raise_missing(exc, user_id, workflow_id, workflow_version)
                raise
            if row is not None:
                break
        if row is None:  # pragma: no cover - needs a third concurrent writer
            raise ConflictError("a request with this Idempotency-Key is in progress")
        return _created(row, request_hash)

    def replayed_job(
        self, user_id: str, idempotency_key: str, request_hash: str
    ) -> CreatedJob | None:
        """The job this key and request hash created before (None: no job has the key);
        ConflictError when the key was used with another request hash, as in create_job."""
        row = self._fetchone(
            "job_by_idempotency_key", {"user_id": user_id, "idempotency_key": idempotency_key}
        )
        return None if row is None else _created(row, request_hash)

    def dispatch_pending(
        self,
        start: StartRun,
        *,
        grace_seconds: float,
        limit: int = 100,
        parallel: int = 1,
    ) -> list[tuple[str, str | None]]:
        """Hand pending jobs that never reached the orchestrator to `start`, oldest first and
        fair across users (jobs_pending_undispatched.sql); up to `parallel` calls at once.

        The jobs stay row-locked (FOR UPDATE SKIP LOCKED) while `start` runs, so two
        dispatchers never take the same job. `start` returns the flow-run id or None (still
        unreachable: the job stays pending for the next pass). The ids are recorded in the
        same transaction, so a job is never left locked with its run unrecorded. A delayed
        job is handed over with its `scheduled_for` (its run is created Scheduled for then).
        """
        with self.pool.connection() as conn, conn.transaction():
            rows = conn.execute(
                query("jobs_pending_undispatched"),
                {"grace_seconds": grace_seconds, "limit": limit, "window": limit * 4},
            ).fetchall()
            jobs = [PendingJob.from_row(row) for row in rows]
            ids = [job.id for job in jobs]

            def start_one(job: PendingJob) -> str | None:
                if job.scheduled_for is None:
                    return start(job.id)
                return start(job.id, scheduled_for=job.scheduled_for)

            if parallel > 1 and len(jobs) > 1:
                with ThreadPoolExecutor(min(parallel, len(jobs)), "dispatch") as pool:
                    runs = list(pool.map(start_one, jobs))
            else:
                runs = [start_one(job) for job in jobs]
            started = [
                {"job_id": job_id, "flow_run_id": run}
                for job_id, run in zip(ids, runs, strict=True)
                if run is not None
            ]
            if started:
                with conn.cursor() as cur:
                    cur.executemany(query("job_set_flow_run"), started)
        return list(zip(ids, runs, strict=True))

    # -- jobs: user reads (RLS) -----------------------------------------------------------

    def get_job_for_user(self, claims: Mapping[str, Any], job_id: str) -> Row:
        """One job as the caller sees it under RLS; NotFoundError for missing or foreign."""
        with self.as_user(claims) as conn:
            row = conn.execute(query("user_job_get"), {"job_id": job_id}).fetchone()
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
            return conn.execute(query("user_jobs_list"), params).fetchall()

    # -- jobs: engine side ----------------------------------------------------------------

    def get_job(self, job_id: str) -> Row:
        """One whole job row (service path; tests and operators)."""
        row = self._fetchone("job_get_service", {"job_id": job_id})
        if row is None:
            raise NotFoundError(f"job '{job_id}' not found")
        return row

    def load_run_bundle(self, job_id: str) -> RunBundle:
        """The job, its workflow definition and its transformers, in one query."""
        row = self._fetchone("run_bundle", {"job_id": job_id})
        if row is None:
            raise NotFoundError(f"job '{job_id}' not found")
        return RunBundle.from_row(row)

    @contextmanager
    def locked_in_flight(
        self, *, grace_seconds: float, limit: int = 100
    ) -> Iterator[tuple[psycopg.Connection[Row], list[InFlightJob]]]:
        """In one transaction: the in-flight jobs, row-locked (SKIP LOCKED) until it ends."""
        with self.pool.connection() as conn, conn.transaction():
            rows = conn.execute(
                query("jobs_in_flight"), {"grace_seconds": grace_seconds, "limit": limit}
            ).fetchall()
            yield conn, [InFlightJob.from_row(row) for row in rows]

    def events(self, job_id: str) -> list[Row]:
        """Every event of a job in order (service path; tests and operators)."""
        return self._fetchall("job_events_list", {"job_id": job_id})

    def statuses(self, job_ids: Sequence[str]) -> dict[str, str]:
        """Current status of several jobs (service path)."""
        rows = self._fetchall("job_statuses", {"job_ids": list(job_ids)})
        return {r["id"]: r["status"] for r in rows}


def _created(row: Row, request_hash: str | None) -> CreatedJob:
    """A job_insert.sql (or job_by_idempotency_key.sql) row as CreatedJob; ConflictError for
    an existing job whose request hash differs."""
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
        scheduled_for=row["scheduled_for"],
    )


def _raise_missing(
    exc: psycopg.errors.ForeignKeyViolation,
    user_id: str | None,
    workflow_id: str,
    workflow_version: int | None,
) -> None:
    """Raise what a job insert's foreign-key violation means (returns for another key)."""
    missing = _JOB_FOREIGN_KEYS.get(exc.diag.constraint_name or "")
    if missing == "user":
        raise UnknownUserError(f"user '{user_id}' does not exist") from None
    if missing == "workflow":
        raise NotFoundError(f"workflow '{workflow_id}' does not exist") from None
    if missing == "version":
        raise NotFoundError(f"workflow '{workflow_id}' has no version {workflow_version}") from None
