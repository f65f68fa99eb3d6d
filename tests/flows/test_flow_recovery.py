"""Crash recovery by the maintenance flow: a flow run killed mid-step is detected by its
silent heartbeat, marked Crashed in Prefect, and the job is resubmitted as a new flow run
that resumes at the first unfinished step; past max_retries the job fails; two concurrent
maintenance passes never handle the same job twice."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
import pytest
from flow_services import (
    Scripted,
    add_workflow,
    held_first,
    http_transformer,
    kill_flow_mid_step,
    serve,
)
from prefect.client.orchestration import get_client
from prefect.flow_engine import run_flow
from pytest_httpserver import HTTPServer

from engine.db.store import JobStore
from engine.settings import get_settings
from flows.maintenance import maintenance
from flows.recovery import recover_jobs
from flows.run_workflow import run_workflow


@pytest.fixture
def deployment(prefect_api_url: str) -> Iterator[str]:
    """The run-workflow deployment registered on the test server (no worker needed: the
    tests execute the chosen flow run themselves)."""
    deployment_id = run_workflow.to_deployment(name="run-workflow").apply()
    yield str(deployment_id)


@pytest.fixture
def fast_heartbeat(monkeypatch: pytest.MonkeyPatch, engine_env: str) -> None:
    """Beat every 0.3 s; a job silent for 2 s is presumed dead; resubmit without delay."""
    monkeypatch.setenv("JOB_HEARTBEAT_SECONDS", "0.3")
    monkeypatch.setenv("HEARTBEAT_WINDOW_SECONDS", "2")
    monkeypatch.setenv("RESUBMIT_BACKOFF_SECONDS", "0")
    get_settings.cache_clear()


def _setup(db: psycopg.Connection[Any], http_server: HTTPServer) -> tuple[Scripted, Any]:
    """recover_wf: `fetch` (a counting server), then `wait` (a call held open until the
    returned event is set). Returns the counter and the event."""
    counter = Scripted([200], body={"token": "abc"})
    http_transformer(db, "count-api", serve(http_server, "/count", counter))
    held, release = held_first()
    http_transformer(db, "held-api", serve(http_server, "/held", held))
    add_workflow(
        db,
        "recover_wf",
        {
            "steps": [
                {"id": "fetch", "transformer": "count-api"},
                {
                    "id": "wait",
                    "transformer": "held-api",
                    "input": {"token.$": "$.steps.fetch.body.token"},
                },
            ]
        },
    )
    return counter, release


def _wait_silent(store: JobStore, job_id: str, seconds: float) -> None:
    """Wait until the job's last sign of life is older than `seconds`."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with store.pool.connection() as conn:
            age = conn.execute(
                "select extract(epoch from now() - heartbeat_at) as age from public.jobs"
                " where id = %s",
                [job_id],
            ).fetchone()
        if age and age["age"] is not None and float(age["age"]) > seconds:
            return
        time.sleep(0.2)
    raise AssertionError("the job kept beating")


def test_killed_flow_run_is_resubmitted_and_resumes(
    flow_store: JobStore,
    fast_heartbeat: None,
    deployment: str,
    db: psycopg.Connection[Any],
    user_id: str,
    http_server: HTTPServer,
    tmp_path: Path,
) -> None:
    """kill -9 in the middle of a step: maintenance marks the silent run Crashed, creates a
    new flow run (job back to pending, resubmissions 1); that run completes the job and the
    finished step is not run again."""
    counter, release = _setup(db, http_server)
    job_id = flow_store.create_job(user_id=user_id, workflow_id="recover_wf", input_data={}).id
    kill_flow_mid_step(flow_store, job_id, "wait", tmp_path / "killed.log")
    old_run = flow_store.get_job(job_id)["prefect_flow_run_id"]
    assert old_run is not None
    _wait_silent(flow_store, job_id, 2.5)
    release.set()  # the killed attempt's call ends; the new run's call is answered at once

    outcome = maintenance(grace_seconds=0)

    assert list(outcome["recovery"]["resubmitted"]) == [job_id]
    row = flow_store.get_job(job_id)
    assert row["status"] == "pending" and row["resubmissions"] == 1
    new_run_id = row["prefect_flow_run_id"]
    assert new_run_id != old_run
    with get_client(sync_client=True) as client:
        assert client.read_flow_run(UUID(str(old_run))).state.type.value == "CRASHED"
        new_run = client.read_flow_run(UUID(str(new_run_id)))
    assert new_run.parameters == {"job_id": job_id}

    run_flow(run_workflow, flow_run=new_run, parameters=new_run.parameters)

    done = flow_store.get_job(job_id)
    assert done["status"] == "completed", done["error_message"]
    assert counter.count == 1
    assert [e["step_id"] for e in flow_store.events(job_id) if e["kind"] == "step_skipped"] == [
        "fetch"
    ]
    # The resubmission is in the job's history with its reason.
    pending = [h for h in done["state_history"] if h.get("decision") == "resubmit"]
    assert pending and "no sign of life" in pending[0]["reason"]


def test_job_past_max_retries_is_failed_not_resubmitted(
    flow_store: JobStore,
    fast_heartbeat: None,
    deployment: str,
    db: psycopg.Connection[Any],
    user_id: str,
    http_server: HTTPServer,
    tmp_path: Path,
) -> None:
    """A job whose resubmissions reached its max_retries is failed with a clear message."""
    _, release = _setup(db, http_server)
    job_id = flow_store.create_job(
        user_id=user_id, workflow_id="recover_wf", input_data={}, max_retries=0
    ).id
    kill_flow_mid_step(flow_store, job_id, "wait", tmp_path / "killed.log")
    release.set()
    _wait_silent(flow_store, job_id, 2.5)

    outcome = maintenance(grace_seconds=0)

    assert job_id in outcome["recovery"]["failed"]
    row = flow_store.get_job(job_id)
    assert row["status"] == "failed"
    assert "abandoned" in row["error_message"] and "max_retries is 0" in row["error_message"]


def test_concurrent_maintenance_passes_handle_a_job_once(
    flow_store: JobStore,
    fast_heartbeat: None,
    deployment: str,
    db: psycopg.Connection[Any],
    user_id: str,
    http_server: HTTPServer,
    tmp_path: Path,
) -> None:
    """Two recovery passes at once: row locks with SKIP LOCKED let only one resubmit."""
    _, release = _setup(db, http_server)
    job_id = flow_store.create_job(user_id=user_id, workflow_id="recover_wf", input_data={}).id
    kill_flow_mid_step(flow_store, job_id, "wait", tmp_path / "killed.log")
    release.set()
    _wait_silent(flow_store, job_id, 2.5)
    settings = get_settings()
    results: list[Any] = []
    barrier = threading.Barrier(2)

    def one_pass() -> None:
        barrier.wait()
        import logging

        results.append(recover_jobs(flow_store, settings, log=logging.getLogger("t")))

    threads = [threading.Thread(target=one_pass) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)

    assert sum(len(r.resubmitted) for r in results) == 1
    assert flow_store.get_job(job_id)["resubmissions"] == 1
