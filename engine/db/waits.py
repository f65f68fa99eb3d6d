"""The store of wait steps: `job_waits` rows and the news they write on their job.

Every change of a wait is one transaction with its job's side: `jobs.waiting_for`, a
`state_history` entry and a `job_events` event (`wait_started`, `wait_decided`,
`wait_ended`, `wait_expired`). Service path, except `visible_ids` (RLS: approvals show to
their deciders).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from engine.db.pool import query
from engine.db.rows import Row
from engine.db.store import JobStore
from engine.errors import ConflictError, NotFoundError


class WaitStore:
    """Reads and writes `job_waits` through a job store's pool."""

    def __init__(self, store: JobStore) -> None:
        self.store = store

    # -- the job's side -----------------------------------------------------------------

    def _note(
        self,
        conn: psycopg.Connection[Row],
        wait: Mapping[str, Any],
        event_kind: str,
        detail: Mapping[str, Any],
        *,
        waiting_for: Any = None,
        set_waiting: bool = False,
    ) -> None:
        """A state_history entry and an event on the wait's job (and its waiting_for)."""
        entry = {
            "status": "running",
            "step_id": wait["step_id"],
            "wait": event_kind.removeprefix("wait_"),
            "wait_kind": wait["kind"],
            "wait_id": str(wait["id"]),
            **detail,
        }
        conn.execute(
            query("wait_job_note"),
            {
                "job_id": str(wait["job_id"]),
                "step_id": wait["step_id"],
                "event_kind": event_kind,
                "entry": Jsonb(entry),
                "waiting_for": Jsonb(waiting_for),
                "set_waiting": set_waiting,
                "history_limit": self.store.history_limit,
            },
        )

    def _set_waiting(self, conn: psycopg.Connection[Row], job_id: str, value: Any) -> None:
        conn.execute(query("wait_set_job"), {"job_id": job_id, "waiting_for": Jsonb(value)})

    def set_waiting(self, job_id: str, value: Mapping[str, Any]) -> None:
        """Set the job's waiting_for without an event (a run that found its wait open)."""
        with self.store.pool.connection() as conn:
            self._set_waiting(conn, job_id, dict(value))

    # -- the flow's side ----------------------------------------------------------------

    def open_wait(self, job_id: str, step_id: str) -> Row | None:
        """The job's open (pending or decided) wait at `step_id`, if any."""
        return self.store._fetchone("wait_open", {"job_id": job_id, "step_id": step_id})

    def begin(
        self, job_id: str, step_id: str, fields: Mapping[str, Any], waiting_for: Mapping[str, Any]
    ) -> tuple[Row, bool]:
        """Record the wait (kind, spec, event_name, deciders, forbid_self_approval,
        deadline in `fields`) unless one is open; (the open wait, whether it is new).

        A new wait sets the job's waiting_for and writes `wait_started`; an open one only
        sets waiting_for again (a flow run that found it still pending)."""
        params = {
            "job_id": job_id,
            "step_id": step_id,
            "kind": fields["kind"],
            "spec": Jsonb(fields["spec"]),
            "event_name": fields.get("event_name"),
            "deciders": Jsonb(fields.get("deciders")),
            "forbid_self_approval": bool(fields.get("forbid_self_approval")),
            "deadline": fields.get("deadline"),
        }
        with self.store.pool.connection() as conn, conn.transaction():
            row = conn.execute(query("wait_insert"), params).fetchone()
            created = row is not None
            if row is None:
                row = conn.execute(query("wait_open"), params).fetchone()
            if row is None:
                raise NotFoundError(f"job '{job_id}' not found")
            if created:
                detail = {"deadline": waiting_for.get("deadline")}
                self._note(
                    conn,
                    row,
                    "wait_started",
                    detail,
                    waiting_for=dict(waiting_for),
                    set_waiting=True,
                )
            else:
                self._set_waiting(conn, job_id, dict(waiting_for))
        return row, created

    def consume(self, wait: Mapping[str, Any], output: Any) -> bool:
        """Record a decided wait's output as its step's output, clear waiting_for and write
        `wait_ended`; False when the wait was consumed already."""
        with self.store.pool.connection() as conn, conn.transaction():
            if conn.execute(query("wait_consume"), {"wait_id": wait["id"]}).fetchone() is None:
                return False
            conn.execute(
                query("job_step_output"),
                {
                    "job_id": str(wait["job_id"]),
                    "step_id": wait["step_id"],
                    "output": Jsonb(output),
                    "attempt": 1,
                    "detail": Jsonb({"wait_kind": wait["kind"], "wait_id": str(wait["id"])}),
                },
            )
            self._note(conn, wait, "wait_ended", {}, waiting_for=None, set_waiting=True)
        return True

    # -- decisions ------------------------------------------------------------------------

    def _decide(
        self, conn: psycopg.Connection[Row], wait: Mapping[str, Any], change: Mapping[str, Any]
    ) -> str | None:
        """Decide a pending wait on `conn`; the job's flow run id. ConflictError when it is
        no longer pending (or its job no longer running)."""
        row = conn.execute(
            query("wait_decide"),
            {
                "wait_id": wait["id"],
                "decision": change.get("decision"),
                "comment": change.get("comment"),
                "form": Jsonb(change.get("form")),
                "output": Jsonb(change.get("output")),
                "decided_by": change.get("decided_by"),
                "decided_at": change["decided_at"],
                "reason": change["reason"],
            },
        ).fetchone()
        if row is None:
            raise ConflictError(
                f"wait '{wait['id']}' is already decided", details={"status": wait.get("status")}
            )
        detail = {
            "reason": change["reason"],
            "decision": change.get("decision"),
            "decided_by": change.get("decided_by"),
        }
        self._note(conn, wait, "wait_decided", {k: v for k, v in detail.items() if v})
        flow_run_id = row["prefect_flow_run_id"]
        return str(flow_run_id) if flow_run_id else None

    def decide(
        self,
        wait_id: str,
        change: Callable[[Row], Mapping[str, Any]],
    ) -> tuple[Row, str | None]:
        """Lock the wait, let `change(wait)` check the caller and build the decision (it
        raises to refuse), decide it; (the wait, its job's flow run id). NotFoundError for an
        unknown wait, ConflictError for one decided already."""
        with self.store.pool.connection() as conn, conn.transaction():
            wait = conn.execute(query("wait_locked"), {"wait_id": wait_id}).fetchone()
            if wait is None:
                raise NotFoundError(f"approval '{wait_id}' not found")
            decided = change(wait)
            details = {"status": wait["status"], "job_status": wait["job_status"]}
            if wait["status"] != "pending":
                raise ConflictError(f"approval '{wait_id}' is already decided", details=details)
            if wait["job_status"] not in ("running", "awaiting_retry"):
                raise ConflictError(
                    f"approval '{wait_id}' can no longer be decided: its job is "
                    f"{wait['job_status']}",
                    details=details,
                )
            return wait, self._decide(conn, wait, decided)

    def send_event(
        self, job_id: str, name: str, woken: Callable[[Row], Mapping[str, Any] | None]
    ) -> list[tuple[Row, str | None]]:
        """Decide every pending event wait of the job named `name` for which `woken(wait)`
        gives a decision (its match holds); [(wait, flow run id)] of those it woke."""
        out: list[tuple[Row, str | None]] = []
        with self.store.pool.connection() as conn, conn.transaction():
            for wait in conn.execute(
                query("wait_events_pending"), {"job_id": job_id, "name": name}
            ).fetchall():
                change = woken(wait)
                if change is not None:
                    out.append((wait, self._decide(conn, wait, change)))
        return out

    # -- reads ----------------------------------------------------------------------------

    def list_for_job(self, job_id: str, kind: str = "approval") -> list[Row]:
        """The job's waits of `kind`, oldest first (service path)."""
        return self.store._fetchall("wait_job_list", {"job_id": job_id, "kind": kind})

    def visible_ids(
        self, claims: Mapping[str, Any], job_id: str, kind: str = "approval"
    ) -> set[str]:
        """Ids of the job's waits of `kind` the caller sees under RLS."""
        with self.store.as_user(claims) as conn:
            rows = conn.execute(query("user_wait_ids"), {"job_id": job_id, "kind": kind})
            return {str(r["id"]) for r in rows.fetchall()}

    # -- maintenance ----------------------------------------------------------------------

    @contextmanager
    def locked_due(self, limit: int = 100) -> Iterator[tuple[psycopg.Connection[Row], list[Row]]]:
        """In one transaction: approvals and events past their deadline, row-locked."""
        with self.store.pool.connection() as conn, conn.transaction():
            rows = conn.execute(query("waits_due"), {"limit": limit}).fetchall()
            yield conn, rows

    def decide_on(
        self, conn: psycopg.Connection[Row], wait: Mapping[str, Any], change: Mapping[str, Any]
    ) -> str | None:
        """Decide a locked wait on the caller's transaction (a deadline's approve/reject)."""
        return self._decide(conn, wait, change)

    def expire(self, conn: psycopg.Connection[Row], wait: Mapping[str, Any], message: str) -> None:
        """Mark a locked wait expired and note it on its job (which the caller fails)."""
        conn.execute(query("wait_expire"), {"wait_id": wait["id"]})
        self._note(conn, wait, "wait_expired", {"reason": "timeout", "error": message})
        self._set_waiting(conn, str(wait["job_id"]), None)

    def unresumed(self, grace_seconds: float, limit: int = 100) -> list[Row]:
        """Decided waits of running jobs left unconsumed for `grace_seconds`."""
        return self.store._fetchall(
            "waits_unresumed", {"grace_seconds": grace_seconds, "limit": limit}
        )
