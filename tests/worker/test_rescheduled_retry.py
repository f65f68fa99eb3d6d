"""Long retry backoffs hold nothing: a retry delay above RETRY_RESCHEDULE_SECONDS ends the flow
run, which Prefect shows as AwaitingRetry, scheduled for the job's `next_retry_at`; the warm
worker's slot is free meanwhile, and the next run of the same flow run resumes the step at
its next attempt."""

from __future__ import annotations

from collections.abc import Iterator
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
from engine.settings import get_settings

#: Below the policy's delay by no more than clock granularity and bookkeeping.
SLACK_SECONDS = 0.005


@pytest.fixture
def reschedule_above_one_second(monkeypatch: pytest.MonkeyPatch, engine_env: str) -> Iterator[None]:
    """Retry delays above 1 s are rescheduled (the default is 30 s)."""
    monkeypatch.setenv("RETRY_RESCHEDULE_SECONDS", "1")
    get_settings.cache_clear()
    yield


def fixed_retry_workflow(
    db: psycopg.Connection[Any], http_server: HTTPServer, api: Scripted, delay: float
) -> None:
    """Workflow `wf_later`: one HTTP step, retried up to twice after `delay` seconds."""
    http_transformer(db, "later-api", serve(http_server, "/later", api))
    retry = {"max_retries": 2, "strategy": "fixed", "initial_delay_seconds": delay, "jitter": 0}
    add_workflow(
        db, "wf_later", {"retry": retry, "steps": [{"id": "fetch", "transformer": "later-api"}]}
    )


def parked(store: JobStore, job_id: str, run_id: str, worker: Any) -> dict[str, Any] | None:
    """The job row once its retry is rescheduled: the job awaiting_retry, its flow run
    Scheduled (AwaitingRetry) and no run left in the worker; None before."""
    row = store.get_job(job_id)
    run = read_flow_run(run_id)
    waiting = (
        row["status"] == "awaiting_retry" and run.state and run.state.type.value == "SCHEDULED"
    )
    return row if waiting and not worker.runs else None


@pytest.mark.slow
def test_a_long_backoff_ends_the_flow_run_and_the_same_run_resumes_at_the_next_attempt(
    flow_store: JobStore,
    db: psycopg.Connection[Any],
    user_id: str,
    http_server: HTTPServer,
    reschedule_above_one_second: None,
) -> None:
    """503, then 200, with an 8-s fixed delay: after the failure the job is awaiting_retry
    and its flow run AwaitingRetry, scheduled at the job's next_retry_at, with the worker
    running nothing. The same flow run then runs again (run_count 2), attempt 2 starts no
    earlier than the delay, and the job completes with retry_count 1; each flow run pass is
    its own task run of the step."""
    api = Scripted([503, 200], body={"answer": 42})
    fixed_retry_workflow(db, http_server, api, delay=8)
    pool = unique_pool()
    deployment_id = deploy(pool)
    with warm_worker(pool, limit=1, query_seconds=1, prefetch_seconds=0) as worker:
        job_id = flow_store.create_job(user_id=user_id, workflow_id="wf_later", input_data={}).id
        run_id = dispatch(flow_store, deployment_id, job_id)
        row = wait_until(lambda: parked(flow_store, job_id, run_id, worker), 60, "a parked retry")
        run = read_flow_run(run_id)
        assert run.state is not None and run.state.name == "AwaitingRetry"
        scheduled = run.state.state_details.scheduled_time
        assert scheduled is not None
        assert abs((scheduled - row["next_retry_at"]).total_seconds()) < 0.001
        assert api.count == 1
        statuses = wait_for_jobs(flow_store, [job_id])
        final_run = wait_for_state(run_id, "COMPLETED")
    assert statuses == {job_id: "completed"}
    row = flow_store.get_job(job_id)
    assert row["step_data"]["fetch"]["body"] == {"answer": 42}
    assert row["retry_count"] == 1 and str(row["prefect_flow_run_id"]) == run_id
    assert final_run.run_count == 2
    first, second = api.hits
    assert second.entered - first.left >= 8 - SLACK_SECONDS
    assert [e["attempt"] for e in job_events(flow_store, job_id, "step_started")] == [1, 2]
    [event] = job_events(flow_store, job_id, "retry_rescheduled")
    assert event["step_id"] == "fetch" and event["detail"] == {"next_attempt": 2}
    assert wait_for_task_runs(run_id) == ["fetch", "fetch"]


@pytest.mark.slow
def test_a_five_minute_backoff_holds_no_worker_slot_while_it_waits(
    flow_store: JobStore,
    db: psycopg.Connection[Any],
    user_id: str,
    http_server: HTTPServer,
    reschedule_above_one_second: None,
) -> None:
    """A 300-s backoff: the worker (limit 1) holds no run while the job waits, the flow run
    is scheduled 300 s after the failure, and a second job takes the only slot at once."""
    api = Scripted([503, 200])
    fixed_retry_workflow(db, http_server, api, delay=300)
    http_transformer(db, "quick-api", serve(http_server, "/quick", Scripted([200])))
    add_workflow(db, "wf_quick", {"steps": [{"id": "call", "transformer": "quick-api"}]})
    pool = unique_pool()
    deployment_id = deploy(pool)
    with warm_worker(pool, limit=1, query_seconds=1, prefetch_seconds=0) as worker:
        job_id = flow_store.create_job(user_id=user_id, workflow_id="wf_later", input_data={}).id
        run_id = dispatch(flow_store, deployment_id, job_id)
        row = wait_until(lambda: parked(flow_store, job_id, run_id, worker), 60, "a parked retry")
        wait_seconds = (row["next_retry_at"] - datetime.now(UTC)).total_seconds()
        assert 240 < wait_seconds <= 300
        other = flow_store.create_job(user_id=user_id, workflow_id="wf_quick", input_data={}).id
        dispatch(flow_store, deployment_id, other)
        assert wait_for_jobs(flow_store, [other]) == {other: "completed"}
        assert flow_store.get_job(job_id)["status"] == "awaiting_retry"
    assert api.count == 1
