"""The API with Prefect up, and with Prefect down and back: the real app, the real Prefect
server of the test session, the project's real deployment and the real maintenance flow."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID

import psycopg
import pytest
from fastapi.testclient import TestClient
from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterIdempotencyKey
from prefect.client.schemas.objects import FlowRun
from waiting import wait_until

from cli.work_pools import create_work_pools
from engine.dispatch import RunStarter
from engine.settings import PROJECT_ROOT, get_settings

if TYPE_CHECKING:
    # Annotation only: at run time several conftest modules share the name `conftest`.
    from conftest import ApiUser

DEPLOYMENT = "run-workflow/run-workflow"
WORK_POOL = "local-process"
WARM_POOL = "supaflow-warm"
START_BODY = {"workflow_id": "demo_offline_v1", "input_data": {"text": "through prefect"}}
PREFECT_CLI = str(Path(sys.executable).parent / "prefect")


def prefect_env(api_url: str, **extra: str) -> dict[str, str]:
    """Environment for a Prefect CLI subprocess talking to the test server.

    Client retries are back at Prefect's default: the test server's SQLite answers 503
    ("database is locked") under bursts of writes, which Prefect's client retries; only the
    API's run starter is meant to give up at once.
    """
    return {
        **os.environ,
        "PREFECT_API_URL": api_url,
        "PREFECT_CLIENT_MAX_RETRIES": "5",
        "SUPAFLOW_PROJECT_DIR": str(PROJECT_ROOT),
        "SUPAFLOW_PYTHON": sys.executable,
        **extra,
    }


@pytest.fixture(scope="module")
def deployment_id(prefect_api_url: str) -> UUID:
    """The project's deployments registered on the test Prefect server (its work pools, then
    `prefect deploy --all`, as `supaflow up` does); an existing pool or deployment (another
    test's) is reused."""
    env = prefect_env(prefect_api_url, WARM_POOL=WARM_POOL)
    # As the stack does: the warm pool's type is unknown to `prefect work-pool create`.
    create_work_pools(prefect_api_url, {WORK_POOL: "process", WARM_POOL: "supaflow-warm"})
    deploy = subprocess.run(
        [PREFECT_CLI, "--no-prompt", "deploy", "--all"],
        check=False,
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert deploy.returncode == 0, deploy.stdout + deploy.stderr
    with SyncPrefectClient(prefect_api_url) as client:
        return client.read_deployment_by_name(DEPLOYMENT).id


@pytest.fixture(autouse=True)
def prefect_client_retries() -> Iterator[None]:
    """Prefect's default client retries for this module's in-process clients (the maintenance
    flow, the checks): the test server's SQLite can answer 503 under bursts of writes. A
    refused connection is still not retried (Prefect retries those only after a first
    successful connection), so the closed-port starter keeps failing at once."""
    from prefect.settings import PREFECT_CLIENT_MAX_RETRIES, temporary_settings

    with temporary_settings({PREFECT_CLIENT_MAX_RETRIES: 5}):
        yield


@pytest.fixture
def prefect_client(prefect_api_url: str) -> Iterator[SyncPrefectClient]:
    """A client of the test Prefect server, for looking at what the API created."""
    with SyncPrefectClient(prefect_api_url) as client:
        yield client


@pytest.fixture
def live_starter(prefect_api_url: str) -> Iterator[RunStarter]:
    """The API's run starter, as the app builds it, pointed at the running Prefect server."""
    starter = RunStarter.own_client(DEPLOYMENT, api_url=prefect_api_url, fail_fast=True)
    yield starter
    starter.close()


def runs_for_job(client: SyncPrefectClient, job_id: str) -> list[FlowRun]:
    """Every flow run whose idempotency key is this job's id."""
    return client.read_flow_runs(
        flow_run_filter=FlowRunFilter(
            idempotency_key=FlowRunFilterIdempotencyKey(any_=[job_id]),
        )
    )


def runs_with_job_parameter(
    client: SyncPrefectClient, deployment: UUID, job_id: str
) -> list[FlowRun]:
    """Every flow run of the deployment whose `job_id` parameter is this job."""
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    runs = client.read_flow_runs(
        deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment]))
    )
    return [run for run in runs if run.parameters.get("job_id") == job_id]


def stored_flow_run_id(db: psycopg.Connection[Any], job_id: str) -> str | None:
    """The flow run id recorded on the job row."""
    row = db.execute(
        "select prefect_flow_run_id::text from public.jobs where id = %s", [job_id]
    ).fetchone()
    assert row is not None
    return None if row[0] is None else str(row[0])


def start_job(client: TestClient, user: ApiUser, key: str | None = None) -> tuple[int, str]:
    """POST /workflows/start; (status, job id)."""
    headers = dict(user.headers)
    if key:
        headers["Idempotency-Key"] = key
    response = client.post("/workflows/start", json=START_BODY, headers=headers)
    assert response.status_code in (200, 201), response.text
    return response.status_code, str(response.json()["job_id"])


def test_start_with_prefect_up_creates_the_jobs_flow_run(
    make_client: Callable[..., TestClient],
    make_user: Callable[..., ApiUser],
    live_starter: RunStarter,
    deployment_id: UUID,
    prefect_client: SyncPrefectClient,
    db: psycopg.Connection[Any],
) -> None:
    """With Prefect reachable, a job recorded by POST /workflows/start gets a flow run of
    `run-workflow` (parameters {"job_id"}, idempotency key = job id) from the admission
    dispatcher, its id on the row with a `dispatched` event; an idempotent replay creates no
    second run."""
    client = make_client(starter=live_starter)
    user = make_user()

    status, job_id = start_job(client, user, key="up-1")
    assert status == 201
    # The answer does not wait on Prefect: the admission dispatcher, woken by the insert's
    # NOTIFY, creates the run and records it.
    flow_run_id = wait_until(lambda: stored_flow_run_id(db, job_id), 30, "the job's flow run")
    try:
        run = prefect_client.read_flow_run(UUID(flow_run_id))
        assert run.deployment_id == deployment_id
        assert run.parameters == {"job_id": job_id}
        assert run.idempotency_key == job_id
        assert run.state is not None and run.state.is_scheduled()
        events = db.execute(
            "select detail->>'flow_run_id' from public.job_events"
            " where job_id = %s and kind = 'dispatched'",
            [job_id],
        ).fetchall()
        assert events == [(flow_run_id,)]
        # The job stays pending until a worker starts the run.
        assert client.get(f"/jobs/{job_id}", headers=user.headers).json()["status"] == "pending"

        assert start_job(client, user, key="up-1") == (200, job_id)
        assert [r.id for r in runs_for_job(prefect_client, job_id)] == [UUID(flow_run_id)]
    finally:
        # Leave no scheduled run behind for another test's worker to pick up.
        if flow_run_id is not None:
            prefect_client.delete_flow_run(UUID(flow_run_id))


def run_flow_run_in_process(client: SyncPrefectClient, flow_run_id: str) -> None:
    """Execute an existing (scheduled) flow run of `run_workflow` in this process, as the
    process a worker starts would (`prefect.engine`): the same flow run, not a new one."""
    from prefect.flow_engine import run_flow

    from flows.run_workflow import run_workflow

    flow_run = client.read_flow_run(UUID(flow_run_id))
    run_flow(run_workflow, flow_run=flow_run, parameters=flow_run.parameters)


def test_jobs_started_while_prefect_is_down_are_dispatched_once_it_is_back(
    engine_env: str,
    client: TestClient,
    make_user: Callable[..., ApiUser],
    deployment_id: UUID,
    prefect_client: SyncPrefectClient,
    database_url: str,
    db: psycopg.Connection[Any],
) -> None:
    """Prefect unreachable at start: the job stays pending without a flow run. The maintenance
    flow (a real flow run, in this process) then creates exactly one run for it, and calling
    it again creates none; that run (executed in this process) completes the job."""
    from flows.maintenance import maintenance

    # The maintenance flow reads the settings; they must name the app's database.
    assert get_settings().database_url == engine_env == database_url
    user = make_user()
    status, job_id = start_job(client, user)
    assert status == 201
    assert stored_flow_run_id(db, job_id) is None
    assert runs_for_job(prefect_client, job_id) == []

    first = maintenance(grace_seconds=0)
    assert job_id in first["dispatched"]
    flow_run_id = stored_flow_run_id(db, job_id)
    assert flow_run_id is not None

    second = maintenance(grace_seconds=0)
    assert job_id not in second["dispatched"] + second["still_pending"]
    assert stored_flow_run_id(db, job_id) == flow_run_id
    assert [r.id for r in runs_for_job(prefect_client, job_id)] == [UUID(flow_run_id)]

    run_flow_run_in_process(prefect_client, flow_run_id)

    job = client.get(f"/jobs/{job_id}", headers=user.headers).json()
    assert job["status"] == "completed", job
    assert job["final_result"]["summary"]["headline"]["text"] == "through prefect"
    runs = runs_with_job_parameter(prefect_client, deployment_id, job_id)
    assert [r.id for r in runs] == [UUID(flow_run_id)]
    assert runs[0].idempotency_key == job_id
    assert runs[0].state is not None and runs[0].state.is_completed()


def test_dispatch_that_lost_its_record_finds_the_same_run(
    engine_env: str,
    client: TestClient,
    make_user: Callable[..., ApiUser],
    deployment_id: UUID,
    prefect_client: SyncPrefectClient,
    db: psycopg.Connection[Any],
) -> None:
    """If a run was created but its id never reached the job row (a crash in between), the
    next maintenance pass gets the same run back from Prefect (idempotency key), not a second
    one."""
    from flows.maintenance import maintenance

    _, job_id = start_job(client, make_user())
    maintenance(grace_seconds=0)
    flow_run_id = stored_flow_run_id(db, job_id)
    assert flow_run_id is not None
    try:
        db.execute("update public.jobs set prefect_flow_run_id = null where id = %s", [job_id])

        again = maintenance(grace_seconds=0)

        assert job_id in again["dispatched"]
        assert stored_flow_run_id(db, job_id) == flow_run_id
        assert [r.id for r in runs_for_job(prefect_client, job_id)] == [UUID(flow_run_id)]
    finally:
        prefect_client.delete_flow_run(UUID(flow_run_id))


@pytest.mark.slow
def test_a_real_worker_runs_the_dispatched_job_once(
    engine_env: str,
    client: TestClient,
    make_user: Callable[..., ApiUser],
    deployment_id: UUID,
    prefect_api_url: str,
    prefect_client: SyncPrefectClient,
    db: psycopg.Connection[Any],
    tmp_path: Path,
) -> None:
    """Prefect down at start, maintenance dispatches, and a real process worker (a
    subprocess polling the pool) executes the run: the job completes with one flow run."""
    from flows.maintenance import maintenance

    user = make_user()
    _, job_id = start_job(client, user)
    maintenance(grace_seconds=0)
    flow_run_id = stored_flow_run_id(db, job_id)
    assert flow_run_id is not None

    log = (tmp_path / "worker.log").open("w")
    worker = subprocess.Popen(
        [PREFECT_CLI, "worker", "start", "--pool", WORK_POOL, "--type", "process"],
        cwd=PROJECT_ROOT,
        env=prefect_env(
            prefect_api_url,
            DATABASE_URL=engine_env,
            PREFECT_WORKER_QUERY_SECONDS="1",
        ),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 180
        status = "pending"
        while time.monotonic() < deadline:
            status = job_status(db, job_id)
            if status in ("completed", "failed"):
                break
            assert worker.poll() is None, (tmp_path / "worker.log").read_text()
            time.sleep(0.5)
        assert status == "completed", (tmp_path / "worker.log").read_text()
    finally:
        # The worker ignores SIGTERM for minutes; SIGINT stops it.
        worker.send_signal(signal.SIGINT)
        try:
            worker.wait(timeout=60)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
        log.close()

    job = client.get(f"/jobs/{job_id}", headers=user.headers).json()
    assert job["status"] == "completed"
    runs = runs_with_job_parameter(prefect_client, deployment_id, job_id)
    assert [r.id for r in runs] == [UUID(flow_run_id)]
    final = prefect_client.read_flow_run(UUID(flow_run_id))
    assert final.state is not None and final.state.is_completed()


def job_status(db: psycopg.Connection[Any], job_id: str) -> str:
    """The job's current status, read as the service."""
    row = db.execute("select status from public.jobs where id = %s", [job_id]).fetchone()
    assert row is not None
    return str(row[0])
