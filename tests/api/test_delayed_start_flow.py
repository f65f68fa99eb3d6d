"""Delayed starts through the real app, real PostgreSQL, the session's real Prefect server and a
warm worker: the flow run is created Scheduled for the job's `scheduled_for` (by the admission
dispatcher, or later by the maintenance dispatch when Prefect was out of reach), the job starts
no earlier, maintenance leaves it alone meanwhile, and a cancel before its time fails it and
cancels its flow run. Timings are printed (lateness), never asserted beyond "not before"."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import psycopg
import pytest
from control_helpers import WarmDeployment, last_entry, warm_deployment
from fastapi.testclient import TestClient
from waiting import wait_until
from warm_workers import read_flow_run, wait_for_jobs, wait_for_state, warm_worker

from engine.db.store import JobStore
from engine.settings import get_settings
from flows.recovery import recover_jobs

if TYPE_CHECKING:
    from conftest import ApiUser

__all__ = ["warm_deployment"]  # the fixture, used by name

START = {"workflow_id": "demo_offline_v1", "input_data": {"text": "later please"}}
log = logging.getLogger("test_delayed_start_flow")


def flow_run_of(store: JobStore, job_id: str) -> str | None:
    """The job's recorded flow run id, once it has one."""
    run = store.get_job(job_id)["prefect_flow_run_id"]
    return None if run is None else str(run)


def recover_now(store: JobStore) -> dict[str, Any]:
    """One maintenance recovery pass that takes every in-flight job (a 0.5-s window)."""
    settings = get_settings().model_copy(update={"heartbeat_window_seconds": 0.5})
    return recover_jobs(store, settings, log=log).as_dict()


@pytest.mark.slow
def test_a_delayed_job_waits_scheduled_and_starts_no_earlier_than_its_time(
    flow_store: JobStore,
    make_client: Callable[..., TestClient],
    make_user: Callable[..., ApiUser],
    warm_deployment: WarmDeployment,
) -> None:
    """delay_seconds 3: the job is pending with scheduled_for; the admission dispatcher
    creates its flow run SCHEDULED with that expected start time; a warm worker that takes it
    early (prefetch) holds it; it completes in that same run, and its started_at is not
    before scheduled_for."""
    owner = make_user()
    client = make_client(starter=warm_deployment.starter)
    answer = client.post(
        "/workflows/start", json={**START, "delay_seconds": 3}, headers=owner.headers
    )
    assert answer.status_code == 201, answer.text
    job_id = answer.json()["job_id"]
    scheduled_for = datetime.fromisoformat(answer.json()["scheduled_for"])
    run_id = wait_until(lambda: flow_run_of(flow_store, job_id), 30, "the job's flow run")
    run = read_flow_run(run_id)
    job = client.get(f"/jobs/{job_id}", headers=owner.headers).json()
    assert job["status"] == "pending"
    assert datetime.fromisoformat(job["scheduled_for"]) == scheduled_for
    assert run.state is not None and run.state.type.value in ("SCHEDULED", "PENDING")
    assert run.expected_start_time == scheduled_for
    # Prefetch: the worker takes the run up to 10 s early and Prefect holds it until its time.
    with warm_worker(warm_deployment.pool, limit=2, query_seconds=1, prefetch_seconds=10):
        assert wait_for_jobs(flow_store, [job_id]) == {job_id: "completed"}
    row = flow_store.get_job(job_id)
    assert row["started_at"] >= scheduled_for
    assert row["resubmissions"] == 0 and str(row["prefect_flow_run_id"]) == run_id
    lateness = (row["started_at"] - scheduled_for).total_seconds()
    print(f"delayed start lateness (started_at - scheduled_for): {lateness:.3f} s")
    assert wait_for_state(run_id, "COMPLETED").state is not None


@pytest.mark.slow
def test_a_delayed_job_prefect_missed_is_scheduled_later_for_its_time_and_can_be_cancelled(
    flow_store: JobStore,
    db: psycopg.Connection[Any],
    client: TestClient,
    make_client: Callable[..., TestClient],
    make_user: Callable[..., ApiUser],
    warm_deployment: WarmDeployment,
) -> None:
    """Prefect out of reach at the request (the closed-port starter): the job is pending with
    no flow run. The maintenance dispatch later creates it SCHEDULED for the same time; a
    second dispatch and a recovery pass leave it alone. The owner's cancel: 200, the job
    failed with error kind `cancelled`, the flow run Cancelled."""
    owner = make_user()
    answer = client.post(
        "/workflows/start", json={**START, "delay_seconds": 600}, headers=owner.headers
    )
    assert answer.status_code == 201, answer.text
    job_id = answer.json()["job_id"]
    scheduled_for = datetime.fromisoformat(answer.json()["scheduled_for"])
    assert flow_run_of(flow_store, job_id) is None

    # Retried: the app's own (failing) dispatcher may hold the row for a moment (SKIP LOCKED).
    run_id = wait_until(
        lambda: dict(
            flow_store.dispatch_pending(warm_deployment.starter.try_start, grace_seconds=0)
        ).get(job_id),
        30,
        "the maintenance dispatch to create the flow run",
    )
    assert flow_run_of(flow_store, job_id) == run_id
    run = read_flow_run(run_id)
    assert run.state is not None and run.state.type.value == "SCHEDULED"
    assert run.expected_start_time == scheduled_for
    assert job_id not in dict(
        flow_store.dispatch_pending(warm_deployment.starter.try_start, grace_seconds=0)
    )
    wait_until(
        lambda: (
            db.execute(
                "select dispatched_at < now() - interval '0.6 seconds' "
                "from public.jobs where id = %s",
                (job_id,),
            ).fetchone()
            == (True,)
        ),
        30,
        "the job to be in flight past the window",
    )
    recovered = recover_now(flow_store)
    assert job_id not in recovered["resubmitted"] and job_id not in recovered["failed"]

    control = make_client(starter=warm_deployment.starter)
    cancel = control.post(f"/jobs/{job_id}/cancel", headers=owner.headers)
    assert cancel.status_code == 200, cancel.text
    assert cancel.json()["status"] == "failed" and cancel.json()["error_kind"] == "cancelled"
    cancelled = wait_for_state(run_id, "CANCELLED")
    assert cancelled.state is not None and owner.user_id in (cancelled.state.message or "")
    assert last_entry(flow_store, job_id)["kind"] == "cancelled"
    job = control.get(f"/jobs/{job_id}", headers=owner.headers).json()
    assert job["status"] == "failed" and job["error_kind"] == "cancelled"
    assert job["started_at"] is None
