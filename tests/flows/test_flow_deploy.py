"""prefect.yaml deploys both flows to a Prefect server, and a process worker runs a job
from the run-workflow deployment exactly as production does."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterId,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import StateType

from cli.definition_files import sync_definitions
from engine.db.store import JobStore
from engine.settings import PROJECT_ROOT

PREFECT = str(Path(sys.executable).with_name("prefect"))
POOL = "local-process"
WARM_POOL = "supaflow-warm"
#: Worker start, run pick-up, flow-run process start and the demo's ~3 s of steps.
JOB_LIMIT_SECONDS = 90


def _stop_worker(worker: subprocess.Popen[bytes]) -> None:
    # The process worker ignores SIGTERM for minutes; SIGINT stops it.
    if worker.poll() is None:
        worker.send_signal(signal.SIGINT)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(timeout=30)


def _wait_for_status(store: JobStore, job_id: str, worker: subprocess.Popen[bytes]) -> str:
    deadline = time.monotonic() + JOB_LIMIT_SECONDS
    status = ""
    while time.monotonic() < deadline:
        status = str(store.get_job(job_id)["status"])
        if status in ("completed", "failed"):
            return status
        assert worker.poll() is None, f"the worker exited ({worker.returncode})"
        time.sleep(0.25)
    return status


@pytest.mark.slow
def test_prefect_yaml_deploys_and_a_worker_runs_a_job(
    engine_env: str,
    prefect_api_url: str,
    flow_store: JobStore,
    db: psycopg.Connection[Any],
    user_id: str,
    tmp_path: Path,
) -> None:
    """`supaflow deploy` (the work pools, then `prefect --no-prompt deploy --all` with
    SUPAFLOW_PROJECT_DIR, SUPAFLOW_PYTHON and WARM_POOL) creates run-workflow/run-workflow
    and maintenance/maintenance (the latter on a 30 s schedule) on the process pool, and
    run-workflow/run-workflow-warm on the warm pool; a process worker then executes a demo
    job's flow run (created with the job id as idempotency key, as the API does) until the
    job row says completed."""
    env = dict(os.environ)  # carries the test's PREFECT_API_URL, DATABASE_URL, HTTP_ALLOWLIST
    env.update(
        PREFECT_API_URL=prefect_api_url,
        SUPAFLOW_PROJECT_DIR=str(PROJECT_ROOT),
        SUPAFLOW_PYTHON=sys.executable,
        WARM_POOL=WARM_POOL,
    )
    # `supaflow deploy`: both work pools (the warm one through Prefect's client), then
    # `prefect --no-prompt deploy --all`, as deployments/README.md tells operators.
    deploy = subprocess.run(
        [str(Path(sys.executable).parent / "supaflow"), "deploy"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert deploy.returncode == 0, deploy.stdout + deploy.stderr

    with get_client(sync_client=True) as client:
        run_deployment = client.read_deployment_by_name("run-workflow/run-workflow")
        maintenance = client.read_deployment_by_name("maintenance/maintenance")
        warm = client.read_deployment_by_name("run-workflow/run-workflow-warm")
        assert (warm.work_pool_name, warm.entrypoint) == (WARM_POOL, run_deployment.entrypoint)
        assert run_deployment.work_pool_name == POOL
        assert run_deployment.entrypoint == "flows/run_workflow.py:run_workflow"
        assert run_deployment.job_variables["command"] == f"{sys.executable} -m prefect.engine"
        assert maintenance.work_pool_name == POOL
        assert [s.schedule.interval for s in maintenance.schedules] == [  # type: ignore[union-attr]
            timedelta(seconds=30)
        ]
        assert all(s.active for s in maintenance.schedules)
        # This worker must run only the job's flow run: stop the schedule and drop the
        # maintenance runs it may already have planned.
        client.pause_deployment(maintenance.id)
        planned = client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[maintenance.id])),
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED]))
            ),
        )
        for run in planned:
            client.delete_flow_run(run.id)

    sync_definitions(flow_store)
    job_id = flow_store.create_job(
        user_id=user_id, workflow_id="demo_offline_v1", input_data={"text": "deployed"}
    ).id

    worker_env = {**env, "PREFECT_WORKER_QUERY_SECONDS": "1"}
    log_path = tmp_path / "worker.log"
    with log_path.open("wb") as log:
        worker = subprocess.Popen(
            [PREFECT, "worker", "start", "--pool", POOL, "--type", "process"],
            cwd=tmp_path,
            env=worker_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            with get_client(sync_client=True) as client:
                flow_run = client.create_flow_run_from_deployment(
                    run_deployment.id, parameters={"job_id": job_id}, idempotency_key=job_id
                )
                again = client.create_flow_run_from_deployment(
                    run_deployment.id, parameters={"job_id": job_id}, idempotency_key=job_id
                )
                assert again.id == flow_run.id
            flow_store.set_flow_run(job_id, str(flow_run.id))
            status = _wait_for_status(flow_store, job_id, worker)
        finally:
            _stop_worker(worker)

    row = flow_store.get_job(job_id)
    assert status == "completed", f"{row['error_message']}\n{log_path.read_text()[-4000:]}"
    assert row["final_result"]["summary"]["headline"]["text"] == "deployed"
    assert str(row["prefect_flow_run_id"]) == str(flow_run.id)
