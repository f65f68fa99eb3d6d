"""A real run_workflow flow run in its own process, with Prefect reading engine/logging.yml
through PREFECT_LOGGING_SETTINGS_PATH: its console lines are JSON carrying the job context,
and the lines Prefect stores for its UI carry the same context."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any
from uuid import UUID

import psycopg
import pytest
from dbfixtures import create_user
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

from engine.logging_json import prefect_logging_env

SCRIPT = """
import sys
from engine.db.connection import shared_store
from cli.definition_files import sync_definitions
from flows.run_workflow import run_workflow

store = shared_store()
sync_definitions(store)
job = store.create_job(
    user_id=sys.argv[1], workflow_id="demo_offline_v1", input_data={"text": "hi"}
)
print(job.id, flush=True)
run_workflow(job.id)
print(store.get_job(job.id)["prefect_flow_run_id"] or "", flush=True)
"""


@pytest.fixture
def flow_run_output(
    engine_env: str, prefect_api_url: str, db: psycopg.Connection[Any]
) -> tuple[str, list[dict[str, Any]], list[str]]:
    """Run the demo workflow in a child process; returns (job id, JSON lines, other lines)."""
    env = {**os.environ, **prefect_logging_env(), "PREFECT_LOGGING_LEVEL": "INFO"}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, create_user(db)],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    job_id = done.stdout.split()[0]
    parsed: list[dict[str, Any]] = []
    other: list[str] = []
    for line in done.stderr.splitlines():
        try:
            parsed.append(json.loads(line))
        except ValueError:
            other.append(line)
    return job_id, parsed, other


@pytest.mark.slow
def test_flow_and_task_lines_are_json_with_job_context(
    flow_run_output: tuple[str, list[dict[str, Any]], list[str]],
) -> None:
    """Every run line is a JSON object with job_id; step lines add workflow, step,
    transformer, attempt and Prefect's run ids; outcomes carry their duration."""
    job_id, lines, _ = flow_run_output
    run_lines = [ln for ln in lines if ln.get("logger", "").startswith("prefect.")]
    assert run_lines, "no Prefect run lines on the console"
    flow_lines = [ln for ln in lines if ln.get("logger") == "prefect.flow_runs"]
    task_lines = [ln for ln in lines if ln.get("logger") == "prefect.task_runs"]
    assert flow_lines and task_lines
    missing = [ln for ln in flow_lines + task_lines if ln.get("job_id") != job_id]
    assert not missing, missing[:3]
    for line in flow_lines + task_lines:
        assert line["flow_run_id"], line
    started = [ln for ln in task_lines if ln["message"] == "step started"]
    assert {ln["step_id"] for ln in started} == {
        "receive",
        "pause",
        "headline",
        "details",
        "summary",
    }
    for line in started:
        assert line["workflow_id"] == "demo_offline_v1"
        assert line["transformer_id"] and line["attempt"] == 1 and line["task_run_id"]
    succeeded = [ln for ln in task_lines if ln["message"] == "step succeeded"]
    assert len(succeeded) == 5 and all(ln["duration_ms"] >= 0 for ln in succeeded)
    # Prefect's own line about a task run's end also names the step (RunContextFilter).
    finished = [ln for ln in task_lines if ln["message"].startswith("Finished in state")]
    assert finished and all(ln.get("step_id") for ln in finished)


async def _ui_messages(flow_run_id: str) -> list[str]:
    async with get_client() as client:
        logs = await client.read_logs(
            LogFilter(flow_run_id=LogFilterFlowRunId(any_=[UUID(flow_run_id)]))
        )
    return [log.message for log in logs]


@pytest.mark.slow
def test_prefect_ui_messages_carry_job_context(
    flow_run_output: tuple[str, list[dict[str, Any]], list[str]],
) -> None:
    """The messages Prefect stores for its UI end with the job context of the line."""
    import asyncio

    job_id, lines, _ = flow_run_output
    flow_run_id = next(ln["flow_run_id"] for ln in lines if ln.get("flow_run_id"))
    messages = asyncio.run(_ui_messages(str(flow_run_id)))
    step_started = [m for m in messages if m.startswith("step started (")]
    assert len(step_started) == 5
    assert all(f"job_id={job_id}" in m and "step_id=" in m for m in step_started)
    assert not any("flow_run_id=" in m for m in messages)
