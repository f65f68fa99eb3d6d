"""A flow run killed mid-job is resumed by the next run at the first unfinished step."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
from flow_services import (
    Scripted,
    add_workflow,
    held_first,
    http_transformer,
    kill_flow_mid_step,
    serve,
)
from pytest_httpserver import HTTPServer

from engine.db.store import JobStore
from flows.run_workflow import run_workflow

#: Upper bound for a fresh Python to import Prefect and finish step 1.
STEP_ONE_LIMIT_SECONDS = 120


def test_killed_run_resumes_without_repeating_finished_steps(
    flow_store: JobStore,
    db: psycopg.Connection[Any],
    user_id: str,
    http_server: HTTPServer,
    tmp_path: Path,
) -> None:
    """Crash recovery: the flow runs in a subprocess; once step 1 (a call to a counting
    server) is in step_data and step 2 (a call the server holds open) has started, the
    process is killed with SIGKILL. Running the flow again completes the job, step 1's server
    is still called only once, and a `step_skipped` event records that its output was
    reused; step 2, interrupted mid-call, is called again."""
    counter = Scripted([200], body={"token": "abc"})
    http_transformer(db, "count-api", serve(http_server, "/count", counter))
    held, release = held_first(body={"waited": True})
    http_transformer(db, "held-api", serve(http_server, "/held", held))
    add_workflow(
        db,
        "resume_wf",
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
    job_id = flow_store.create_job(user_id=user_id, workflow_id="resume_wf", input_data={}).id

    kill_flow_mid_step(flow_store, job_id, "wait", tmp_path / "flow-subprocess.log")

    crashed = flow_store.get_job(job_id)
    assert crashed["status"] == "running"
    assert crashed["current_step_id"] == "wait"
    assert set(crashed["step_data"]) == {"fetch"}
    assert counter.count == 1
    release.set()  # the interrupted call ends; the rerun's call is answered at once

    result = run_workflow(job_id)

    row = flow_store.get_job(job_id)
    assert row["status"] == "completed", row["error_message"]
    assert counter.count == 1
    assert row["step_data"]["wait"]["body"] == {"waited": True}
    assert held.count in (1, 2)  # the killed attempt's call may not have arrived yet
    assert result == row["final_result"]
    events = flow_store.events(job_id)
    skipped = [e["step_id"] for e in events if e["kind"] == "step_skipped"]
    assert skipped == ["fetch"]
    started = [e["step_id"] for e in events if e["kind"] == "step_started"]
    assert started == ["fetch", "wait", "wait"]
