"""Wait steps on the warm worker: the job waits holding no worker slot, its flow run ends
Sleeping (Scheduled) or Paused, and the same flow run goes on when the time comes or the
wait is decided; the wait's output is the step's output, mapped by the next step."""

from __future__ import annotations

import time
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

from engine.db.store import JobStore
from engine.db.waits import WaitStore
from engine.dispatch import RunStarter


def two_calls(
    db: psycopg.Connection[Any], http_server: HTTPServer, wait: dict[str, Any]
) -> Scripted:
    """Workflow `wf_wait`: `before` (HTTP), the wait step `pause`, then `after` (HTTP) posting
    the wait's output; returns the `after` endpoint."""
    http_transformer(db, "before-api", serve(http_server, "/before", Scripted([200])))
    after = Scripted([200], on_request=lambda _n: time.time())
    http_transformer(db, "after-api", serve(http_server, "/after", after), method="POST")
    add_workflow(
        db,
        "wf_wait",
        {
            "steps": [
                {"id": "before", "transformer": "before-api"},
                {"id": "pause", **wait},
                {"id": "after", "transformer": "after-api", "input": {"body.$": "$.steps.pause"}},
            ]
        },
    )
    return after


def parked(store: JobStore, job_id: str, run_id: str, worker: Any, state: str) -> Any:
    """The job row once it waits: waiting_for set, its flow run in `state`, and the worker
    running nothing; None before."""
    row = store.get_job(job_id)
    run = read_flow_run(run_id)
    at_wait = row["waiting_for"] is not None and run.state and run.state.type.value == state
    return row if at_wait and not worker.runs else None


@pytest.mark.slow
def test_a_sleep_holds_no_slot_and_resumes_on_time(
    flow_store: JobStore, db: psycopg.Connection[Any], user_id: str, http_server: HTTPServer
) -> None:
    """A 3-s sleep: the job stays running with waiting_for {kind sleep, deadline}, its flow
    run is Scheduled "Sleeping" at the deadline and the worker (limit 1) runs nothing; a
    second job takes the only slot meanwhile. The same flow run then goes on no earlier than
    the deadline, `after` gets {slept_until}, and the job completes."""
    after = two_calls(db, http_server, {"sleep": {"seconds": 3}})
    http_transformer(db, "quick-api", serve(http_server, "/quick", Scripted([200])))
    add_workflow(db, "wf_quick", {"steps": [{"id": "call", "transformer": "quick-api"}]})
    pool = unique_pool()
    deployment_id = deploy(pool)
    with warm_worker(pool, limit=1, query_seconds=1, prefetch_seconds=0) as worker:
        job_id = flow_store.create_job(user_id=user_id, workflow_id="wf_wait", input_data={}).id
        run_id = dispatch(flow_store, deployment_id, job_id)
        row = wait_until(
            lambda: parked(flow_store, job_id, run_id, worker, "SCHEDULED"), 60, "the sleep"
        )
        slots_while_sleeping = len(worker.runs)
        run = read_flow_run(run_id)
        assert run.state is not None and run.state.name == "Sleeping"
        waiting = row["waiting_for"]
        assert row["status"] == "running"
        assert waiting["kind"] == "sleep" and waiting["step"] == "pause"
        deadline = datetime.fromisoformat(waiting["deadline"])
        assert run.state.state_details.scheduled_time == deadline
        other = flow_store.create_job(user_id=user_id, workflow_id="wf_quick", input_data={}).id
        dispatch(flow_store, deployment_id, other)
        assert wait_for_jobs(flow_store, [other]) == {other: "completed"}
        assert wait_for_jobs(flow_store, [job_id]) == {job_id: "completed"}
        final_run = wait_for_state(run_id, "COMPLETED")
    lateness = after.hits[0].seen - deadline.timestamp()
    print(
        f"sleep 3 s: slots held while sleeping {slots_while_sleeping}, woke {lateness:.3f} s late"
    )
    assert slots_while_sleeping == 0
    assert lateness >= 0
    row = flow_store.get_job(job_id)
    assert row["waiting_for"] is None
    assert row["step_data"]["pause"] == {"slept_until": deadline.isoformat()}
    assert final_run.run_count == 2
    kinds = [e["kind"] for e in flow_store.events(job_id) if e["kind"].startswith("wait_")]
    assert kinds == ["wait_started", "wait_decided", "wait_ended"]
    assert "pause" in wait_for_task_runs(run_id)


@pytest.mark.slow
def test_an_approval_pauses_the_run_and_a_decision_resumes_it(
    flow_store: JobStore,
    db: psycopg.Connection[Any],
    user_id: str,
    http_server: HTTPServer,
    prefect_api_url: str,
) -> None:
    """An approval parks the job with its flow run Paused "AwaitingApproval" and no slot
    held; deciding it (the store's decision, then engine.dispatch.resume) runs the same flow
    run again, which records the decision as the step's output and completes the job."""
    after = two_calls(db, http_server, {"approval": {}})
    pool = unique_pool()
    deployment_id = deploy(pool)
    starter = RunStarter.own_client(f"run-workflow/warm-{pool}", api_url=prefect_api_url)
    waits = WaitStore(flow_store)
    try:
        with warm_worker(pool, limit=1, query_seconds=1, prefetch_seconds=0) as worker:
            job_id = flow_store.create_job(user_id=user_id, workflow_id="wf_wait", input_data={}).id
            run_id = dispatch(flow_store, deployment_id, job_id)
            row = wait_until(
                lambda: parked(flow_store, job_id, run_id, worker, "PAUSED"), 60, "the approval"
            )
            run = read_flow_run(run_id)
            assert run.state is not None and run.state.name == "AwaitingApproval"
            assert row["waiting_for"]["kind"] == "approval" and not worker.runs
            [wait] = waits.list_for_job(job_id)
            decided_at = datetime.now(UTC)
            output = {"decision": "approved", "decided_by": user_id}
            _wait, flow_run_id = waits.decide(
                str(wait["id"]),
                lambda _w: {
                    "decision": "approve",
                    "output": output,
                    "decided_by": user_id,
                    "decided_at": decided_at,
                    "reason": "decision",
                },
            )
            assert flow_run_id == run_id and starter.resume(run_id)
            assert wait_for_jobs(flow_store, [job_id]) == {job_id: "completed"}
    finally:
        starter.close()
    row = flow_store.get_job(job_id)
    assert row["step_data"]["pause"] == output and row["waiting_for"] is None
    assert after.hits[0].body and b'"approved"' in after.hits[0].body
    assert [e["step_id"] for e in job_events(flow_store, job_id, "wait_decided")] == ["pause"]


def decide(waits: WaitStore, wait_id: str, user_id: str) -> str | None:
    """Approve a wait as `user_id` through the store; its job's flow run id."""
    now = datetime.now(UTC)
    change = {"decision": "approve", "output": {"by": user_id}, "decided_at": now}
    _wait, run_id = waits.decide(
        wait_id, lambda _w: {**change, "decided_by": user_id, "reason": "decision"}
    )
    return run_id


@pytest.mark.slow
def test_parallel_waits_park_after_the_other_branches_and_each_decision_resumes(
    flow_store: JobStore,
    db: psycopg.Connection[Any],
    user_id: str,
    http_server: HTTPServer,
    prefect_api_url: str,
) -> None:
    """Two approvals and an HTTP step in parallel: the HTTP step runs before the flow run
    pauses; deciding one approval resumes the run, which pauses again at the other (a new
    pause key); deciding that one completes the job, the HTTP step having run once."""
    side = Scripted([200])
    http_transformer(db, "side-api", serve(http_server, "/side", side))
    join = Scripted([200])
    http_transformer(db, "join-api", serve(http_server, "/join", join))
    steps = [
        {"id": "a", "approval": {}, "depends_on": []},
        {"id": "b", "approval": {}, "depends_on": []},
        {"id": "side", "transformer": "side-api", "depends_on": []},
        {"id": "join", "transformer": "join-api", "depends_on": ["a", "b", "side"]},
    ]
    add_workflow(db, "wf_two_waits", {"steps": steps})
    pool = unique_pool()
    deployment_id = deploy(pool)
    starter = RunStarter.own_client(f"run-workflow/warm-{pool}", api_url=prefect_api_url)
    waits = WaitStore(flow_store)
    try:
        with warm_worker(pool, limit=1, query_seconds=1, prefetch_seconds=0) as worker:
            job = flow_store.create_job(user_id=user_id, workflow_id="wf_two_waits", input_data={})
            run_id = dispatch(flow_store, deployment_id, job.id)
            wait_until(lambda: parked(flow_store, job.id, run_id, worker, "PAUSED"), 60, "pause")
            assert side.count == 1 and join.count == 0
            by_step = {w["step_id"]: str(w["id"]) for w in waits.list_for_job(job.id)}
            first_key = read_flow_run(run_id).state.state_details.pause_key  # type: ignore[union-attr]
            assert decide(waits, by_step["b"], user_id) == run_id and starter.resume(run_id)

            def paused_again() -> bool:
                run = read_flow_run(run_id)
                state = run.state
                return bool(
                    state and state.is_paused() and state.state_details.pause_key != first_key
                )

            wait_until(paused_again, 60, "the second pause")
            assert flow_store.get_job(job.id)["status"] == "running" and join.count == 0
            assert decide(waits, by_step["a"], user_id) == run_id and starter.resume(run_id)
            assert wait_for_jobs(flow_store, [job.id]) == {job.id: "completed"}
    finally:
        starter.close()
    assert side.count == 1 and join.count == 1
    step_data = flow_store.get_job(job.id)["step_data"]
    assert step_data["a"] == {"by": user_id} and step_data["b"] == {"by": user_id}
