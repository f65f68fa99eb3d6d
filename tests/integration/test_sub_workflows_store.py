"""The store of sub-workflows on a real database (migration 20261207000500): a parent's wait
and its child job are created together and only once; the child's terminal transition decides
the wait (a trigger); what the trigger could not see is decided by `decide_ended`; orphaned
children are found; and RLS shows a child, with its parent's ids, to the owner alone."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from dbfixtures import as_user, create_user, insert_workflow

from engine.db.job_writes import Transition
from engine.db.store import JobStore
from engine.db.sub_workflows import ChildStart, ChildStore, child_key
from engine.definitions.wait_steps import WorkflowCall
from engine.jobs.transitions import JobStatus

Conn = psycopg.Connection[Any]


@pytest.fixture
def store(database_url: str) -> Iterator[JobStore]:
    """A JobStore on the test's database."""
    job_store = JobStore(database_url, max_size=2)
    try:
        yield job_store
    finally:
        job_store.close()


@pytest.fixture
def parent(db: Conn, store: JobStore, user_id: str) -> str:
    """A running job of workflow `parent_wf`; the workflow `child_wf` exists."""
    insert_workflow(db, "parent_wf", {"steps": [{"id": "call", "workflow": {"workflow_id": "c"}}]})
    insert_workflow(db, "child_wf", {"steps": [{"id": "a", "sleep": {"seconds": 1}}]})
    job_id = store.create_job(user_id=user_id, workflow_id="parent_wf", input_data={}).id
    assert store.transition(job_id, Transition(status=JobStatus.RUNNING, step_id="call"))
    return job_id


def begin(store: JobStore, parent: str, data: Any = None) -> ChildStart:
    """The parent's `call` step starts child_wf (version 1) with `data`."""
    call = WorkflowCall(workflow_id="child_wf")
    return ChildStore(store).begin_child(
        parent, "call", (call, 1, data or {"n": 1}), datetime.now(UTC)
    )


def end_child(store: JobStore, child: str, change: Transition) -> None:
    """The child runs, then ends with `change`."""
    assert store.transition(child, Transition(status=JobStatus.RUNNING))
    assert store.transition(child, change)


def test_a_child_is_created_once_with_its_parents_owner_and_ids(
    store: JobStore, parent: str, user_id: str
) -> None:
    """The first arrival records the wait and the child (the parent's owner, parent ids, the
    wait's key, pinned version, input), sets waiting_for and writes wait_started and
    child_started; a second arrival (a resubmitted flow run) finds the same child."""
    first = begin(store, parent)
    assert first.created and first.child_job_id is not None
    again = begin(store, parent, {"n": 2})
    assert (again.created, again.child_job_id) == (False, first.child_job_id)
    child = store.get_job(first.child_job_id)
    assert str(child["user_id"]) == user_id
    assert (str(child["parent_job_id"]), child["parent_step_id"]) == (parent, "call")
    assert child["idempotency_key"] == child_key(parent, "call", str(first.wait["id"]))
    assert (child["workflow_version"], child["input_data"], child["status"]) == (
        1,
        {"n": 1},
        "pending",
    )
    with store.pool.connection() as conn:
        count = conn.execute(
            "select count(*) as n from public.jobs where parent_job_id = %s", (parent,)
        ).fetchone()
    assert count is not None and count["n"] == 1
    waiting = store.get_job(parent)["waiting_for"]
    assert waiting["kind"] == "workflow" and waiting["child_job_id"] == first.child_job_id
    events = {e["kind"]: e for e in store.events(parent)}
    assert events["child_started"]["detail"]["child_job_id"] == first.child_job_id
    assert events["wait_started"]["detail"]["child_job_id"] == first.child_job_id


def test_a_completed_child_decides_its_parents_wait(store: JobStore, parent: str) -> None:
    """The child's completion decides the parent's wait in the same transaction (reason
    child), with the child's final_result in its output and a wait_decided event."""
    child = str(begin(store, parent).child_job_id)
    end_child(store, child, Transition(status=JobStatus.COMPLETED, final_result={"sent": True}))
    wait = ChildStore(store).open_wait(parent, "call")
    assert wait is not None and (wait["status"], wait["reason"]) == ("decided", "child")
    assert wait["output"] == {
        "child_job_id": child,
        "status": "completed",
        "final_result": {"sent": True},
        "error_message": None,
        "error_kind": None,
    }
    decided = [e for e in store.events(parent) if e["kind"] == "wait_decided"]
    assert decided and decided[0]["detail"]["child_status"] == "completed"
    assert ChildStore(store).parent_run(child) is not None


def test_a_failed_child_decides_it_with_its_error(store: JobStore, parent: str) -> None:
    """A failed child's error message and kind are in the decided output."""
    child = str(begin(store, parent).child_job_id)
    failed = Transition(
        status=JobStatus.FAILED, error_message="step 'a' failed", detail={"kind": "timeout"}
    )
    end_child(store, child, failed)
    wait = ChildStore(store).open_wait(parent, "call")
    assert wait is not None and wait["output"]["status"] == "failed"
    assert wait["output"]["error_message"] == "step 'a' failed"
    assert wait["output"]["error_kind"] == "timeout"


def test_a_deleted_child_is_decided_failed_by_the_pass(
    store: JobStore, db: Conn, parent: str
) -> None:
    """A wait whose child is gone (the trigger never fires) is decided by decide_ended,
    failed, naming the deletion; a wait whose child still runs is left pending."""
    child = str(begin(store, parent).child_job_id)
    assert ChildStore(store).decide_ended(parent) == []
    db.execute("delete from public.jobs where id = %s", (child,))
    [row] = ChildStore(store).decide_ended(None)
    assert str(row["job_id"]) == parent
    wait = ChildStore(store).open_wait(parent, "call")
    assert wait is not None and wait["status"] == "decided"
    assert wait["output"]["error_message"] == "the child job was deleted"


def test_a_child_whose_parent_ended_is_orphaned(store: JobStore, parent: str) -> None:
    """Once the parent fails (its open waits expire), its live child is listed for cancel."""
    child = str(begin(store, parent).child_job_id)
    assert ChildStore(store).orphaned_children() == []
    store.transition(parent, Transition(status=JobStatus.FAILED, error_message="cancelled"))
    orphans = ChildStore(store).orphaned_children()
    assert [str(r["id"]) for r in orphans] == [child]


def _visible(db: Conn, user: str | None, role: str, job_ids: list[str]) -> dict[str, Any]:
    with as_user(db, user, role) as conn:
        rows = conn.execute(
            "select id::text, parent_job_id::text, parent_step_id from public.jobs "
            "where id = any(%s::uuid[])",
            (job_ids,),
        ).fetchall()
        waits = conn.execute(
            "select child_job_id::text from public.job_waits where kind = 'workflow'"
        ).fetchall()
    return {"jobs": {r[0]: (r[1], r[2]) for r in rows}, "waits": [w[0] for w in waits]}


def test_rls_shows_the_child_to_its_owner_only(
    store: JobStore, db: Conn, parent: str, user_id: str
) -> None:
    """Under `authenticated`, the owner reads the parent, the child with its parent's ids,
    and the workflow wait; another user reads none of them; `anon` reads nothing."""
    child = str(begin(store, parent).child_job_id)
    ids = [parent, child]
    owner = _visible(db, user_id, "authenticated", ids)
    assert owner == {"jobs": {parent: (None, None), child: (parent, "call")}, "waits": [child]}
    stranger = create_user(db)
    assert _visible(db, stranger, "authenticated", ids) == {"jobs": {}, "waits": []}
    for table in ("jobs", "job_waits"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege), as_user(db, None, "anon") as c:
            c.execute(f"select 1 from public.{table}")  # type: ignore[arg-type]


def test_nesting_depth_counts_the_ancestors(store: JobStore, parent: str) -> None:
    """A job started by the API is at depth 0, its child at 1, a grandchild at 2; the count
    stops at its limit."""
    child = str(begin(store, parent).child_job_id)
    assert store.transition(child, Transition(status=JobStatus.RUNNING, step_id="call"))
    grandchild = str(begin(store, child).child_job_id)
    children = ChildStore(store)
    assert [children.nesting_depth(j) for j in (parent, child, grandchild)] == [0, 1, 2]
    assert children.nesting_depth(grandchild, limit=1) == 1
