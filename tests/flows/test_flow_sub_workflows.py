"""Sub-workflow steps on a warm worker through real Prefect: the parent starts a child job
(same owner, linked ids, its own flow run tagged with the parent), parks holding no worker
slot (its flow run Paused "AwaitingWorkflow"), and resumes when the child ends, the child's
final_result becoming the step's output; a failed child fails the step, naming the child;
a child input that does not fit its schema fails the step before any child exists; a
resubmitted parent flow run finds its child instead of starting a second one; and a
cancelled parent's child is cancelled by the maintenance pass."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from flow_services import Scripted, add_workflow, http_transformer, serve
from pytest_httpserver import HTTPServer
from waiting import wait_until
from warm_workers import (
    deploy,
    dispatch,
    job_events,
    read_flow_run,
    unique_pool,
    wait_for_jobs,
    wait_for_state,
    wait_for_task_runs,
    warm_worker,
)

from engine.db import job_control
from engine.db.store import JobStore
from engine.db.waits import WaitStore
from engine.dispatch import RunStarter
from engine.jobs.control import error_kind
from flows import sub_workflows
from flows.sub_workflows import run_sub_workflows

CHILD_SCHEMA = {
    "type": "object",
    "properties": {"n": {"type": "integer"}},
    "required": ["n"],
}


def workflows(db: psycopg.Connection[Any], http_server: HTTPServer, child_status: int) -> Scripted:
    """`wf_child` (one HTTP call answering `child_status`, result {n, call}) and `wf_parent`
    (the sub-workflow step `kid` with input {n}, then `after` posting the step's output);
    returns the `after` endpoint."""
    child = Scripted([child_status], body={"sent": True})
    http_transformer(db, "child-api", serve(http_server, "/child", child), method="POST")
    after = Scripted([200])
    http_transformer(db, "after-api", serve(http_server, "/after", after), method="POST")
    add_workflow(
        db,
        "wf_child",
        {
            "input_schema": CHILD_SCHEMA,
            "steps": [{"id": "call", "transformer": "child-api", "input": {"body.$": "$.input"}}],
            "output": {"n.$": "$.input.n", "call.$": "$.steps.call"},
        },
    )
    add_workflow(
        db,
        "wf_parent",
        {
            "steps": [
                {
                    "id": "kid",
                    "workflow": {"workflow_id": "wf_child"},
                    "input": {"n.$": "$.input.n"},
                },
                {"id": "after", "transformer": "after-api", "input": {"body.$": "$.steps.kid"}},
            ]
        },
    )
    return after


def children(db: psycopg.Connection[Any], parent: str) -> list[dict[str, Any]]:
    """The parent's child jobs."""
    with db.cursor(row_factory=psycopg.rows.dict_row) as cur:
        return cur.execute(
            "select * from public.jobs where parent_job_id = %s order by created_at", (parent,)
        ).fetchall()


@pytest.mark.slow
def test_a_parent_waits_for_its_child_and_takes_its_final_result(
    flow_store: JobStore, db: psycopg.Connection[Any], user_id: str, http_server: HTTPServer
) -> None:
    """With one worker slot, the parent must park (no slot held) for the child to run at
    all; the child completes, the parent resumes and its step `kid` holds the child's
    final_result, which `after` receives. Both sides show the link: the child's parent ids
    and tag, the parent's child_started event and wait."""
    after = workflows(db, http_server, 200)
    pool = unique_pool()
    deployment_id = deploy(pool)
    with warm_worker(pool, limit=1, query_seconds=1, prefetch_seconds=0):
        parent = flow_store.create_job(
            user_id=user_id, workflow_id="wf_parent", input_data={"n": 7}
        )
        run_id = dispatch(flow_store, deployment_id, parent.id)
        assert wait_for_jobs(flow_store, [parent.id], timeout=90) == {parent.id: "completed"}
    [child] = children(db, parent.id)
    assert child["status"] == "completed" and str(child["user_id"]) == user_id
    assert child["parent_step_id"] == "kid" and child["input_data"] == {"n": 7}
    expected = child["final_result"]
    assert expected["n"] == 7 and expected["call"]
    row = flow_store.get_job(parent.id)
    assert row["step_data"]["kid"] == expected and row["waiting_for"] is None
    assert json.loads(after.hits[0].body) == expected
    [started] = job_events(flow_store, parent.id, "child_started")
    assert started["step_id"] == "kid" and started["detail"]["child_job_id"] == str(child["id"])
    kinds = [e["kind"] for e in flow_store.events(parent.id) if e["kind"].startswith("wait_")]
    assert kinds == ["wait_started", "wait_decided", "wait_ended"]
    child_run = read_flow_run(str(child["prefect_flow_run_id"]))
    assert f"parent-job-{parent.id}" in child_run.tags
    # The same flow run went on once the child ended (resumed, not replaced).
    assert str(row["prefect_flow_run_id"]) == run_id
    assert read_flow_run(run_id).state_type.value == "COMPLETED"
    assert "kid" in wait_for_task_runs(run_id)


@pytest.mark.slow
def test_a_failed_child_fails_the_parent_step(
    flow_store: JobStore, db: psycopg.Connection[Any], user_id: str, http_server: HTTPServer
) -> None:
    """A child failing (its call answers 400) fails the parent at step `kid`, the error
    naming the child job and the child's own error; `after` never runs."""
    after = workflows(db, http_server, 400)
    pool = unique_pool()
    deployment_id = deploy(pool)
    with warm_worker(pool, limit=2, query_seconds=1, prefetch_seconds=0):
        parent = flow_store.create_job(
            user_id=user_id, workflow_id="wf_parent", input_data={"n": 1}
        )
        dispatch(flow_store, deployment_id, parent.id)
        assert wait_for_jobs(flow_store, [parent.id], timeout=90) == {parent.id: "failed"}
    [child] = children(db, parent.id)
    assert child["status"] == "failed"
    row = flow_store.get_job(parent.id)
    assert row["current_step_id"] == "kid"
    assert f"child job {child['id']} failed" in row["error_message"]
    assert child["error_message"] in row["error_message"]
    assert "client_error" in row["error_message"]
    assert after.count == 0


@pytest.mark.slow
def test_a_child_input_that_does_not_fit_fails_the_step(
    flow_store: JobStore, db: psycopg.Connection[Any], user_id: str, http_server: HTTPServer
) -> None:
    """The rendered input is checked against the child's input_schema before any child is
    created: a string `n` fails step `kid` with a mapping error naming the workflow and the
    field."""
    workflows(db, http_server, 200)
    pool = unique_pool()
    deployment_id = deploy(pool)
    with warm_worker(pool, limit=1, query_seconds=1, prefetch_seconds=0):
        parent = flow_store.create_job(
            user_id=user_id, workflow_id="wf_parent", input_data={"n": "seven"}
        )
        dispatch(flow_store, deployment_id, parent.id)
        assert wait_for_jobs(flow_store, [parent.id], timeout=60) == {parent.id: "failed"}
    row = flow_store.get_job(parent.id)
    assert "mapping" in row["error_message"] and "wf_child" in row["error_message"]
    assert "/n" in row["error_message"]
    assert children(db, parent.id) == []


def approve(waits: WaitStore, wait_id: str, user_id: str) -> str | None:
    """Approve a wait as its owner; its job's flow run id."""
    change = {"decision": "approve", "output": {"ok": True}, "decided_at": datetime.now(UTC)}
    _wait, run = waits.decide(
        wait_id, lambda _w: {**change, "decided_by": user_id, "reason": "decision"}
    )
    return run


def paused(store: JobStore, job_id: str) -> Any:
    """The job row once its current flow run is Paused at a wait; None before."""
    row = store.get_job(job_id)
    run_id = row["prefect_flow_run_id"]
    run = read_flow_run(str(run_id)) if run_id else None
    ok = row["waiting_for"] is not None and run and run.state and run.state.is_paused()
    return row if ok else None


@pytest.mark.slow
def test_a_resubmitted_parent_finds_its_child_instead_of_starting_another(
    flow_store: JobStore,
    db: psycopg.Connection[Any],
    user_id: str,
    prefect_api_url: str,
) -> None:
    """The child waits at an approval, so the parent waits too; a second flow run of the
    parent (a resubmission) parks at the same wait and child: still one child. Approving the
    child completes it, which resumes the parent's current run to completion."""
    add_workflow(db, "wf_child", {"steps": [{"id": "ok", "approval": {}}]})
    add_workflow(
        db, "wf_parent", {"steps": [{"id": "kid", "workflow": {"workflow_id": "wf_child"}}]}
    )
    pool = unique_pool()
    deployment_id = deploy(pool)
    starter = RunStarter.own_client(f"run-workflow/warm-{pool}", api_url=prefect_api_url)
    waits = WaitStore(flow_store)
    try:
        with warm_worker(pool, limit=2, query_seconds=1, prefetch_seconds=0):
            parent = flow_store.create_job(user_id=user_id, workflow_id="wf_parent", input_data={})
            first_run = dispatch(flow_store, deployment_id, parent.id)
            row = wait_until(lambda: paused(flow_store, parent.id), 60, "the parent to park")
            child_id = row["waiting_for"]["child_job_id"]
            wait_until(lambda: paused(flow_store, child_id), 60, "the child to park")
            second_run = dispatch(flow_store, deployment_id, parent.id, key=f"{parent.id}:again")
            assert second_run != first_run
            wait_until(
                lambda: read_flow_run(second_run).run_count >= 1 and paused(flow_store, parent.id),
                60,
                "the resubmitted parent to park",
            )
            assert [str(c["id"]) for c in children(db, parent.id)] == [child_id]
            assert len(job_events(flow_store, parent.id, "child_started")) == 1
            [wait] = waits.list_for_job(child_id)
            child_run = approve(waits, str(wait["id"]), user_id)
            assert child_run is not None and starter.resume(child_run)
            assert wait_for_jobs(flow_store, [parent.id], timeout=90) == {parent.id: "completed"}
    finally:
        starter.close()
    assert flow_store.get_job(parent.id)["step_data"]["kid"] == {"ok": {"ok": True}}
    assert read_flow_run(second_run).state_type.value == "COMPLETED"


@pytest.mark.slow
def test_cancelling_a_parent_cancels_its_child_at_the_next_maintenance_pass(
    flow_store: JobStore,
    db: psycopg.Connection[Any],
    user_id: str,
    prefect_api_url: str,
) -> None:
    """A waiting parent cancelled by its owner fails at once; its child (waiting at an
    approval) is no longer waited for, so the maintenance pass cancels it: the child fails
    with error kind `cancelled` and its flow run is set Cancelled. A second pass does
    nothing."""
    add_workflow(db, "wf_child", {"steps": [{"id": "ok", "approval": {}}]})
    add_workflow(
        db, "wf_parent", {"steps": [{"id": "kid", "workflow": {"workflow_id": "wf_child"}}]}
    )
    pool = unique_pool()
    deployment_id = deploy(pool)
    starter = RunStarter.own_client(f"run-workflow/warm-{pool}", api_url=prefect_api_url)
    log = logging.getLogger("test.sub_workflows")
    try:
        with warm_worker(pool, limit=2, query_seconds=1, prefetch_seconds=0):
            parent = flow_store.create_job(user_id=user_id, workflow_id="wf_parent", input_data={})
            dispatch(flow_store, deployment_id, parent.id)
            row = wait_until(lambda: paused(flow_store, parent.id), 60, "the parent to park")
            child_id = row["waiting_for"]["child_job_id"]
            child = wait_until(lambda: paused(flow_store, child_id), 60, "the child to park")
            outcome = job_control.cancel_job(flow_store, parent.id, user_id)
            assert outcome.status.value == "failed" and outcome.flow_run_id is not None
            starter.cancel(outcome.flow_run_id, "cancelled by its owner")
            assert flow_store.get_job(child_id)["status"] == "running"
            done = run_sub_workflows(flow_store, starter, log=log)
            assert done["cancelled"] == [child_id]
            assert wait_for_jobs(flow_store, [child_id]) == {child_id: "failed"}
            wait_for_state(str(child["prefect_flow_run_id"]), "CANCELLED")
            assert run_sub_workflows(flow_store, starter, log=log)["cancelled"] == []
    finally:
        starter.close()
    ended = flow_store.get_job(child_id)
    assert error_kind(ended["status"], ended["state_history"]) == "cancelled"


@pytest.mark.slow
def test_a_chain_stored_around_the_save_checks_stops_at_the_nesting_limit(
    flow_store: JobStore,
    db: psycopg.Connection[Any],
    user_id: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A workflow that starts itself (stored directly, so no save check refused it) nests
    only MAX_NESTING_DEPTH deep (2 here): the job at depth 2 fails its step without a child,
    and each parent fails in turn, naming its child."""
    monkeypatch.setattr(sub_workflows, "MAX_NESTING_DEPTH", 2)
    add_workflow(
        db, "wf_loop", {"steps": [{"id": "again", "workflow": {"workflow_id": "wf_loop"}}]}
    )
    pool = unique_pool()
    deployment_id = deploy(pool)
    with warm_worker(pool, limit=2, query_seconds=1, prefetch_seconds=0):
        root = flow_store.create_job(user_id=user_id, workflow_id="wf_loop", input_data={}).id
        dispatch(flow_store, deployment_id, root)
        assert wait_for_jobs(flow_store, [root], timeout=90) == {root: "failed"}
    [child] = children(db, root)
    [grandchild] = children(db, str(child["id"]))
    assert children(db, str(grandchild["id"])) == []
    assert "nest at most 2 deep" in flow_store.get_job(str(grandchild["id"]))["error_message"]
    assert (
        f"child job {grandchild['id']} failed"
        in flow_store.get_job(str(child["id"]))["error_message"]
    )
    assert f"child job {child['id']} failed" in flow_store.get_job(root)["error_message"]
