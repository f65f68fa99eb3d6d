"""The shipped offline demo workflow, run through a real Prefect server and real PostgreSQL."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from dbfixtures import create_user

from cli.definition_files import sync_definitions
from engine.db.connection import shared_store
from flows.run_workflow import run_workflow


@pytest.fixture
def store(engine_env: str, prefect_api_url: str) -> Any:
    """The engine's store on the test database, with the shipped definitions synced."""
    s = shared_store()
    sync_definitions(s)
    return s


def test_demo_job_completes_with_parallel_branches_and_full_history(
    store: Any, db: psycopg.Connection[Any]
) -> None:
    """Every step lands in step_data, parallel branches both run, and each transition is
    recorded in state_history and job_events."""
    user = create_user(db)
    job = store.create_job(user_id=user, workflow_id="demo_offline_v1", input_data={"text": "hi"})

    result = run_workflow(job.id)

    row = store.get_job(job.id)
    assert row["status"] == "completed"
    assert set(row["step_data"]) == {"receive", "pause", "headline", "details", "summary"}
    assert result == row["final_result"]
    assert row["final_result"]["summary"]["headline"]["text"] == "hi"
    assert row["started_at"] is not None and row["completed_at"] is not None
    statuses = [e["status"] for e in row["state_history"]]
    assert statuses[0] == "pending" and statuses[-1] == "completed"
    kinds = [e["kind"] for e in store.events(job.id)]
    assert kinds.count("step_succeeded") == 5
    assert kinds[0] == "created"


def test_finished_job_is_not_run_again(store: Any, db: psycopg.Connection[Any]) -> None:
    """Running a completed job's flow again changes nothing."""
    user = create_user(db)
    job = store.create_job(user_id=user, workflow_id="demo_offline_v1", input_data={"text": "x"})
    run_workflow(job.id)
    events_before = len(store.events(job.id))
    assert run_workflow(job.id) is None
    assert len(store.events(job.id)) == events_before
