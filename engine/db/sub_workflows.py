"""The store of sub-workflows: a parent's `workflow` wait and its child job (migration
20261207000500). Service path.

`begin_child` records the wait and inserts the child in one transaction: a parent flow run
that crashes after it finds both on its resubmission, and the child's idempotency key
(`child_key`) keeps a second insert for the same wait from making a second child. The child's
terminal transition decides the wait (a trigger); `decide_ended` does it for what the trigger
could not see.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from engine.db.pool import query
from engine.db.rows import Row, job_max_retries
from engine.db.store import JobStore
from engine.db.waits import WaitStore
from engine.definitions.sub_workflow_checks import StoredWorkflows
from engine.definitions.wait_steps import WorkflowCall
from engine.errors import NotFoundError


def child_key(parent_job_id: str, step_id: str, wait_id: str) -> str:
    """The child job's idempotency key: one child per wait of the parent at its step."""
    return f"{parent_job_id}:child:{step_id}:{wait_id}"


def stored_workflows(store: JobStore) -> StoredWorkflows:
    """Every stored workflow's current definition and versions (the checks of a save)."""
    rows = store._fetchall("workflow_call_graph", {})
    return StoredWorkflows(
        definitions={r["id"]: r["definition"] for r in rows},
        versions={r["id"]: frozenset(r["versions"]) for r in rows},
    )


@dataclass(frozen=True)
class ChildStart:
    """The child a parent waits for: its wait row, the child job id, and whether both were
    created now (False: a flow run of the parent found them open)."""

    wait: Row
    child_job_id: str | None
    created: bool


def waiting_for_child(
    step_id: str, since: datetime, child_job_id: str | None, workflow_id: str
) -> dict[str, Any]:
    """The parent's `jobs.waiting_for` while it waits for its child."""
    return {
        "kind": "workflow",
        "step": step_id,
        "since": since.isoformat(),
        "deadline": None,
        "child_job_id": child_job_id,
        "workflow_id": workflow_id,
    }


class ChildStore(WaitStore):
    """The parent's side of a sub-workflow step, on a job store's pool."""

    def _insert_child(
        self,
        conn: psycopg.Connection[Row],
        parent_job_id: str,
        wait: Row,
        child: tuple[WorkflowCall, int, Any],
    ) -> str:
        """Insert the child job (or find it, by its key); its id."""
        spec, version, input_data = child
        row = conn.execute(
            query("child_job_insert"),
            {
                "parent_job_id": parent_job_id,
                "parent_step_id": wait["step_id"],
                "workflow_id": spec.workflow_id,
                "workflow_version": version,
                "input_data": Jsonb(input_data),
                "max_retries": job_max_retries(None),
                "idempotency_key": child_key(parent_job_id, wait["step_id"], str(wait["id"])),
            },
        ).fetchone()
        if row is None:
            raise NotFoundError(f"job '{parent_job_id}' not found")
        return str(row["id"])

    def begin_child(
        self,
        parent_job_id: str,
        step_id: str,
        child: tuple[WorkflowCall, int, Any],
        since: datetime,
    ) -> ChildStart:
        """Record the parent's wait at `step_id` and create its child job (`child`: the
        call, the child workflow's version, its input_data), unless the wait is open already
        (then that wait and its child). A new wait sets the parent's waiting_for and writes
        `wait_started` and `child_started` on the parent. NotFoundError when the parent, or
        the child's workflow version, does not exist."""
        spec = child[0]
        fields = {"workflow_id": spec.workflow_id, "version": spec.version}
        params = {
            "job_id": parent_job_id,
            "step_id": step_id,
            "kind": "workflow",
            "spec": Jsonb({k: v for k, v in fields.items() if v is not None}),
            "event_name": None,
            "deciders": Jsonb(None),
            "forbid_self_approval": False,
            "deadline": None,
        }
        with self.store.pool.connection() as conn, conn.transaction():
            wait = conn.execute(query("wait_insert"), params).fetchone()
            if wait is None:
                wait = conn.execute(query("wait_open"), params).fetchone()
                if wait is None:
                    raise NotFoundError(f"job '{parent_job_id}' not found")
                found = wait["child_job_id"]
                return ChildStart(wait, None if found is None else str(found), False)
            try:
                child_id = self._insert_child(conn, parent_job_id, wait, child)
            except psycopg.errors.ForeignKeyViolation:
                raise NotFoundError(
                    f"workflow '{spec.workflow_id}' has no version {child[1]}"
                ) from None
            wait = conn.execute(
                query("child_wait_set"), {"wait_id": wait["id"], "child_job_id": child_id}
            ).fetchone()
            assert wait is not None  # inserted above, in this transaction
            self._started(conn, wait, child_id, since, child[1])
        return ChildStart(wait, child_id, True)

    def _started(
        self,
        conn: psycopg.Connection[Row],
        wait: Row,
        child_id: str,
        since: datetime,
        version: int,
    ) -> None:
        """`wait_started` (with waiting_for) and `child_started` on the parent."""
        workflow_id = str(wait["spec"]["workflow_id"])
        waiting = waiting_for_child(wait["step_id"], since, child_id, workflow_id)
        detail = {"deadline": None, "child_job_id": child_id, "workflow_id": workflow_id}
        self._note(conn, wait, "wait_started", detail, waiting_for=waiting, set_waiting=True)
        conn.execute(
            query("job_event_insert"),
            {
                "job_id": str(wait["job_id"]),
                "kind": "child_started",
                "step_id": wait["step_id"],
                "attempt": None,
                "detail": Jsonb(
                    {
                        "child_job_id": child_id,
                        "workflow_id": workflow_id,
                        "workflow_version": version,
                        "wait_id": str(wait["id"]),
                    }
                ),
            },
        )

    def decide_ended(self, parent_job_id: str | None = None, limit: int = 100) -> list[Row]:
        """Decide the pending workflow waits whose child has ended or is gone (only
        `parent_job_id`'s, if given); each decided wait with its parent's flow run id."""
        with self.store.pool.connection() as conn, conn.transaction():
            return conn.execute(
                query("child_waits_ended"), {"job_id": parent_job_id, "limit": limit}
            ).fetchall()

    def nesting_depth(self, job_id: str, limit: int = 100) -> int:
        """0 for a job started by the API, 1 for its child, ... (at most `limit`)."""
        row = self.store._fetchone("job_nesting_depth", {"job_id": job_id, "limit": limit})
        return 0 if row is None else int(row["depth"])

    def parent_run(self, child_job_id: str) -> Row | None:
        """The parent's job id and flow run when its wait for this child is decided."""
        return self.store._fetchone("child_parent_run", {"child_job_id": child_job_id})

    def set_child_run(self, child_job_id: str, flow_run_id: str) -> bool:
        """Record the child's flow run unless one is recorded; True when this one was."""
        row = self.store._fetchone(
            "child_set_flow_run", {"job_id": child_job_id, "flow_run_id": flow_run_id}
        )
        return row is not None

    def orphaned_children(self, limit: int = 100) -> list[Row]:
        """Live children whose parent no longer waits for them (see children_orphaned.sql)."""
        return self.store._fetchall("children_orphaned", {"limit": limit})
