"""Maintenance and a cancel its flow run will never see: a job whose run was killed mid-step
after its owner asked to cancel is failed as cancelled (its run marked Cancelled in Prefect),
never resubmitted."""

from __future__ import annotations

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
from pytest_httpserver import HTTPServer
from waiting import wait_until

from engine.db import job_control
from engine.db.store import JobStore
from engine.jobs.control import CancelAction
from engine.settings import get_settings
from flows.maintenance import maintenance


@pytest.fixture
def fast_heartbeat(monkeypatch: pytest.MonkeyPatch, engine_env: str) -> None:
    """Beat every 0.3 s; a job silent for 2 s is presumed dead; resubmit without delay."""
    monkeypatch.setenv("JOB_HEARTBEAT_SECONDS", "0.3")
    monkeypatch.setenv("HEARTBEAT_WINDOW_SECONDS", "2")
    monkeypatch.setenv("RESUBMIT_BACKOFF_SECONDS", "0")
    get_settings.cache_clear()


def silent_for(store: JobStore, job_id: str, seconds: float) -> bool:
    """Whether the job's last heartbeat is older than `seconds`."""
    with store.pool.connection() as conn:
        row = conn.execute(
            "select extract(epoch from now() - heartbeat_at) as age from public.jobs where id = %s",
            [job_id],
        ).fetchone()
    return bool(row and row["age"] is not None and float(row["age"]) > seconds)


def test_a_crashed_run_with_a_cancel_requested_is_failed_as_cancelled(
    flow_store: JobStore,
    fast_heartbeat: None,
    db: psycopg.Connection[Any],
    user_id: str,
    http_server: HTTPServer,
    tmp_path: Path,
) -> None:
    """kill -9 while step `wait` is in its call, after its owner asked to cancel (the job was
    running, so the request waits for a step boundary that never comes): the maintenance pass
    fails the job with error kind `cancelled`, sets the silent run Cancelled in Prefect, and
    creates no new flow run; the step after it never runs."""
    first = Scripted([200])
    held, release = held_first()
    after = Scripted([200])
    for name, handler in (("first", first), ("wait", held), ("after", after)):
        http_transformer(db, f"{name}-api", serve(http_server, f"/{name}", handler))
    add_workflow(
        db,
        "wf_crash",
        {"steps": [{"id": s, "transformer": f"{s}-api"} for s in ("first", "wait", "after")]},
    )
    job_id = flow_store.create_job(user_id=user_id, workflow_id="wf_crash", input_data={}).id
    kill_flow_mid_step(flow_store, job_id, "wait", tmp_path / "killed.log")
    release.set()
    run_id = str(flow_store.get_job(job_id)["prefect_flow_run_id"])
    asked = job_control.cancel_job(flow_store, job_id, user_id)
    assert asked.action is CancelAction.REQUEST and asked.status == "running"
    wait_until(lambda: silent_for(flow_store, job_id, 2.5), 30, "the killed run to go silent")

    outcome = maintenance(grace_seconds=0)

    assert list(outcome["recovery"]["cancelled"]) == [job_id]
    assert outcome["recovery"]["resubmitted"] == {}
    row = flow_store.get_job(job_id)
    assert row["status"] == "failed" and row["resubmissions"] == 0
    assert row["state_history"][-1]["kind"] == "cancelled"
    assert str(row["prefect_flow_run_id"]) == run_id  # no new flow run
    with get_client(sync_client=True) as client:
        assert client.read_flow_run(UUID(run_id)).state.type.value == "CANCELLED"
    assert set(row["step_data"]) == {"first"} and after.count == 0
