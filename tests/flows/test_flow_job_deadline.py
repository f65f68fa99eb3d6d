"""A workflow's timeout_seconds is the job's deadline (jobs.deadline_at), through real Prefect
and PostgreSQL: set when the job is created and afresh by a rerun; the maintenance pass
fails a job past it with error kind `timeout` and stops its flow run (one terminal transition
even when two passes run at once); a flow run starts no step past it."""

from __future__ import annotations

import logging
import threading
from datetime import timedelta
from typing import Any, cast

import psycopg
import pytest
from flow_services import Scripted, add_workflow, delay_transformer, http_transformer, serve
from prefect.client.schemas.objects import State
from pytest_httpserver import HTTPServer
from waiting import wait_until
from warm_workers import deploy, dispatch, read_flow_run, unique_pool, wait_for_state, warm_worker

from engine.db import job_control
from engine.db.job_deadlines import fail_past_deadline
from engine.db.job_writes import Transition
from engine.db.store import JobStore
from engine.dispatch import RunStarter
from engine.jobs.transitions import JobStatus
from engine.settings import get_settings
from flows.job_deadlines import JobTimedOut, run_job_deadlines
from flows.maintenance import maintenance
from flows.run_workflow import run_workflow


def past_deadline(db: psycopg.Connection[Any], job_ids: list[str]) -> bool:
    """Whether every job's deadline has passed, by the database's clock."""
    row = db.execute(
        "select bool_and(deadline_at <= now()) from public.jobs where id = any(%s::uuid[])",
        [job_ids],
    ).fetchone()
    return bool(row and row[0])


def failed_entries(store: JobStore, job_id: str) -> tuple[int, int]:
    """(state_history entries, status events) that moved the job to failed."""
    row = store.get_job(job_id)
    history = [e for e in row["state_history"] if e["status"] == "failed"]
    events = [e for e in store.events(job_id) if e["kind"] == "status" and e["status"] == "failed"]
    return len(history), len(events)


def test_the_deadline_is_set_at_creation_and_afresh_by_a_rerun(
    flow_store: JobStore, db: psycopg.Connection[Any], user_id: str
) -> None:
    """deadline_at is created_at + the pinned version's timeout_seconds (null without one);
    a rerun of the failed job gets a new deadline from the rerun's time."""
    add_workflow(db, "timed_wf", {"timeout_seconds": 30, "steps": []})
    add_workflow(db, "untimed_wf", {"steps": []})
    timed = flow_store.create_job(user_id=user_id, workflow_id="timed_wf", input_data={}).id
    untimed = flow_store.create_job(user_id=user_id, workflow_id="untimed_wf", input_data={}).id

    row = flow_store.get_job(timed)
    assert row["deadline_at"] == row["created_at"] + timedelta(seconds=30)
    assert flow_store.get_job(untimed)["deadline_at"] is None

    flow_store.transition(timed, Transition(status=JobStatus.FAILED, error_message="boom"))
    db.execute(
        "update public.jobs set deadline_at = now() - interval '1 hour' where id = %s", [timed]
    )
    job_control.rerun_job(flow_store, timed, user_id)
    rerun = flow_store.get_job(timed)
    now = db.execute("select now()").fetchone()
    assert now is not None
    assert rerun["status"] == "pending"
    assert timedelta(seconds=29) < rerun["deadline_at"] - now[0] <= timedelta(seconds=30)


@pytest.mark.slow
def test_a_retrying_job_is_failed_at_its_deadline_and_its_run_stopped(
    flow_store: JobStore, db: psycopg.Connection[Any], user_id: str, http_server: HTTPServer
) -> None:
    """A step failing 503 and retrying every second (25 retries) on the warm worker, under a
    job timeout of 8 s: the maintenance pass, run as production runs it, fails the job as
    `timeout` naming the timeout; its flow run is set Cancelling, the worker stops it before
    its next retry and it ends Cancelled; no request reaches the step after that."""
    api = Scripted([503])
    http_transformer(db, "flaky-api", serve(http_server, "/flaky", api))
    add_workflow(
        db,
        "deadline_wf",
        {
            "timeout_seconds": 8,
            "retry": {"max_retries": 25, "strategy": "fixed", "initial_delay_seconds": 1},
            "steps": [{"id": "call", "transformer": "flaky-api"}],
        },
    )
    pool = unique_pool()
    deployment_id = deploy(pool)
    with warm_worker(pool, limit=1, query_seconds=1, prefetch_seconds=0) as worker:
        job_id = flow_store.create_job(user_id=user_id, workflow_id="deadline_wf", input_data={}).id
        run_id = dispatch(flow_store, deployment_id, job_id)
        wait_until(lambda: api.count >= 2, 30, "the step to retry")
        wait_until(lambda: past_deadline(db, [job_id]), 30, "the job's deadline to pass")

        outcome = maintenance(grace_seconds=60)

        assert outcome["job_deadlines"]["failed"].keys() == {job_id}
        assert outcome["job_deadlines"]["cancelling"] == [run_id]
        row = flow_store.get_job(job_id)
        assert row["status"] == "failed"
        assert row["state_history"][-1]["kind"] == "timeout"
        assert "timed out" in row["error_message"]
        assert "timeout_seconds (8 s)" in row["error_message"]
        ended = wait_for_state(run_id, "CANCELLED", timeout=30)
        wait_until(lambda: not worker.runs, 30, "the worker to let go of the run")
        calls = api.count
    assert ended.state is not None and ended.state.timestamp is not None
    assert api.count == calls, "a step request was made after the run was stopped"
    assert failed_entries(flow_store, job_id) == (1, 1)
    assert flow_store.get_job(job_id)["status"] == "failed"


def test_a_flow_run_starts_no_step_past_the_deadline(
    flow_store: JobStore, db: psycopg.Connection[Any], user_id: str, http_server: HTTPServer
) -> None:
    """A 7 s delay step, then an HTTP step, under a job timeout of 5 s: the delay finishes
    (its output is stored), the HTTP step never starts, and the flow run fails the job as
    `timeout` and ends Failed."""
    delay_transformer(db, "nap", 7)
    after = Scripted([200])
    http_transformer(db, "after-api", serve(http_server, "/after", after))
    add_workflow(
        db,
        "late_wf",
        {
            "timeout_seconds": 5,
            "steps": [
                {"id": "nap", "transformer": "nap", "timeout_seconds": 30},
                {"id": "after", "transformer": "after-api"},
            ],
        },
    )
    job_id = flow_store.create_job(user_id=user_id, workflow_id="late_wf", input_data={}).id

    with pytest.raises(JobTimedOut):
        run_workflow(job_id)

    row = flow_store.get_job(job_id)
    assert row["status"] == "failed"
    assert row["state_history"][-1]["kind"] == "timeout"
    assert "timeout_seconds (5 s)" in row["error_message"]
    assert set(row["step_data"]) == {"nap"}
    assert after.count == 0
    run = read_flow_run(str(row["prefect_flow_run_id"]))
    assert run.state is not None and run.state.type.value == "FAILED"


def test_a_job_parked_for_a_retry_is_failed_and_its_run_ended(
    flow_store: JobStore,
    db: psycopg.Connection[Any],
    user_id: str,
    http_server: HTTPServer,
    monkeypatch: pytest.MonkeyPatch,
    engine_env: str,
) -> None:
    """A step failing 503 whose retry (in 20 s) is rescheduled past its flow run, under a job
    timeout of 8 s: the job waits awaiting_retry with its run Scheduled; past the deadline the
    maintenance pass fails it as `timeout` and sets the run Failed, so it never runs again."""
    monkeypatch.setenv("RETRY_RESCHEDULE_SECONDS", "1")
    get_settings.cache_clear()
    api = Scripted([503])
    http_transformer(db, "later-api", serve(http_server, "/later", api))
    add_workflow(
        db,
        "parked_wf",
        {
            "timeout_seconds": 8,
            "retry": {"max_retries": 2, "strategy": "fixed", "initial_delay_seconds": 20},
            "steps": [{"id": "fetch", "transformer": "later-api"}],
        },
    )
    job_id = flow_store.create_job(user_id=user_id, workflow_id="parked_wf", input_data={}).id
    first_end = cast(State[Any], run_workflow(job_id, return_state=True))
    assert first_end.name == "AwaitingRetry"
    row = flow_store.get_job(job_id)
    run_id = str(row["prefect_flow_run_id"])
    assert row["status"] == "awaiting_retry"
    wait_until(lambda: past_deadline(db, [job_id]), 30, "the job's deadline to pass")

    outcome = maintenance(grace_seconds=60)

    assert outcome["job_deadlines"]["ended"] == [run_id]
    row = flow_store.get_job(job_id)
    assert row["status"] == "failed" and row["state_history"][-1]["kind"] == "timeout"
    run = read_flow_run(run_id)
    assert run.state is not None and run.state.type.value == "FAILED"
    assert "timed out" in (run.state.message or "")
    assert api.count == 1


def test_two_passes_at_once_fail_each_job_once(
    flow_store: JobStore, db: psycopg.Connection[Any], user_id: str
) -> None:
    """Six pending jobs past a 0.2 s deadline, two maintenance passes started together: each
    job is failed by exactly one of them (one state_history entry, one status event); a later
    pass finds nothing to do."""
    add_workflow(db, "short_wf", {"timeout_seconds": 0.2, "steps": []})
    job_ids = [
        flow_store.create_job(user_id=user_id, workflow_id="short_wf", input_data={}).id
        for _ in range(6)
    ]
    wait_until(lambda: past_deadline(db, job_ids), 30, "the deadlines to pass")
    barrier = threading.Barrier(2)
    results: list[dict[str, str]] = []
    log = logging.getLogger("test.deadlines")

    def one_pass() -> None:
        starter = RunStarter(None, "unused")  # these jobs have no flow run to stop
        barrier.wait(10)
        results.append(run_job_deadlines(flow_store, starter, log=log).failed)

    threads = [threading.Thread(target=one_pass) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert len(results) == 2
    assert not results[0].keys() & results[1].keys()
    assert results[0].keys() | results[1].keys() == set(job_ids)
    for job_id in job_ids:
        assert failed_entries(flow_store, job_id) == (1, 1)
        assert flow_store.get_job(job_id)["state_history"][-1]["kind"] == "timeout"
    assert fail_past_deadline(flow_store) == []
