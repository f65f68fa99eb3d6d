"""Latency and throughput of a 3-step no-op job: warm worker vs Prefect's process worker.

What is timed is what POST /workflows/start does and what a client then waits for: insert
the job, create its flow run from the deployment (Prefect client, job id as idempotency key),
store the flow run id on the job (this fires the NOTIFY that wakes a warm worker), then wait
until the job row says `completed`. Both workers run against the same Prefect server and
database, each on its own pool and deployment.

    .venv/bin/python bench/latency_warm.py                 # N=10 each, throughput 100 jobs
    .venv/bin/python bench/latency_warm.py --n 50 --modes warm --throughput-jobs 300

PREFECT_API_URL: use that server (else a throwaway local one is started, SQLite).
DATABASE_URL: use that database (else a throwaway one is created on TEST_ADMIN_DATABASE_URL,
default postgresql://postgres@127.0.0.1:5432/postgres, and dropped at the end).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
WORKFLOW = "bench_noop_3"
TRANSFORMER = "bench-noop"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def prefect_server() -> Iterator[str]:
    """PREFECT_API_URL if set, else a throwaway local server (SQLite in a temp folder)."""
    if os.environ.get("PREFECT_API_URL"):
        yield os.environ["PREFECT_API_URL"]
        return
    home = tempfile.mkdtemp(prefix="bench-prefect-")
    port = _free_port()
    env = {
        **os.environ,
        "PREFECT_HOME": home,
        "DO_NOT_TRACK": "1",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
    }
    log = Path(home) / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                str(Path(PYTHON).parent / "prefect"),
                "server",
                "start",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            time.sleep(0.5)
        else:
            raise RuntimeError(f"Prefect server did not start; see {log}")
        os.environ["PREFECT_HOME"] = home
        os.environ["PREFECT_API_URL"] = url
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(30)


@contextlib.contextmanager
def database() -> Iterator[str]:
    """DATABASE_URL if set, else a throwaway migrated database."""
    if os.environ.get("DATABASE_URL"):
        yield os.environ["DATABASE_URL"]
        return
    from engine.migrate import apply_migrations

    admin = os.environ.get(
        "TEST_ADMIN_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
    )
    name = f"bench_{secrets.token_hex(4)}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    url = psycopg.conninfo.make_conninfo(admin, dbname=name)
    try:
        apply_migrations(url, bootstrap=True)
        os.environ["DATABASE_URL"] = url
        yield url
    finally:
        from engine.database import close_shared_stores

        close_shared_stores()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(
                sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
            )


def seed(store: Any) -> str:
    """A no-op transformer, a 3-step sequential workflow and a user; returns the user id."""
    from engine.sql_files import load_sql

    store.upsert_transformer(
        TRANSFORMER,
        type_="json_transform",
        description="bench no-op",
        config={"template": {"value.$": "$.input"}},
        target_function="execute-json-transform",
    )
    store.upsert_workflow(
        WORKFLOW,
        "three no-op steps",
        {
            "steps": [
                {"id": "a", "transformer": TRANSFORMER, "input": {"x.$": "$.input.x"}},
                {"id": "b", "transformer": TRANSFORMER, "input": {"x.$": "$.steps.a.value.x"}},
                {"id": "c", "transformer": TRANSFORMER, "input": {"x.$": "$.steps.b.value.x"}},
            ],
            "output": {"x.$": "$.steps.c.value.x"},
        },
    )
    with store.pool.connection() as conn:
        row = conn.execute(load_sql("auth_user_upsert"), {"email": "bench@example.com"}).fetchone()
    return str(row["id"])


def deploy_process(pool: str) -> UUID:
    """A process pool and a run-workflow deployment on it, as prefect.yaml declares it."""
    import anyio
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists
    from prefect.utilities.callables import parameter_schema
    from prefect.workers.process import ProcessWorker

    from flows.run_workflow import run_workflow

    async def create() -> UUID:
        async with get_client() as client:
            with contextlib.suppress(ObjectAlreadyExists):
                await client.create_work_pool(
                    WorkPoolCreate(
                        name=pool,
                        type="process",
                        base_job_template=ProcessWorker.get_default_base_job_template(),
                    )
                )
            flow_id = await client.create_flow_from_name(run_workflow.name)
            return await client.create_deployment(
                flow_id=flow_id,
                name="run-workflow-process-bench",
                entrypoint="flows/run_workflow.py:run_workflow",
                work_pool_name=pool,
                work_queue_name="default",
                parameter_openapi_schema=parameter_schema(run_workflow).model_dump(),
                pull_steps=[
                    {"prefect.deployments.steps.set_working_directory": {"directory": str(ROOT)}}
                ],
                job_variables={"command": f"{PYTHON} -m prefect.engine"},
            )

    return anyio.run(create)


def deploy_warm(pool: str) -> UUID:
    """The warm pool and its deployment (flows.warm_worker creates both)."""
    from prefect.client.orchestration import get_client

    from flows.warm_worker import ensure_warm_deployment

    full = ensure_warm_deployment(pool, "run-workflow-warm-bench")
    with get_client(sync_client=True) as client:
        return client.read_deployment_by_name(full).id


@contextlib.contextmanager
def worker(mode: str, pool: str, limit: int, log_dir: Path) -> Iterator[None]:
    """The worker subprocess for `mode`, stopped with SIGINT."""
    env = dict(os.environ)
    if mode == "warm":
        args = [
            PYTHON,
            "-m",
            "flows.warm_worker",
            "--pool",
            pool,
            "--limit",
            str(limit),
            "--query-seconds",
            "10",
        ]
    else:
        env.update({"PREFECT_WORKER_QUERY_SECONDS": "1", "PREFECT_WORKER_PREFETCH_SECONDS": "1"})
        args = [
            str(Path(PYTHON).parent / "prefect"),
            "worker",
            "start",
            "--pool",
            pool,
            "--type",
            "process",
            "--limit",
            str(limit),
        ]
    log = log_dir / f"worker-{mode}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            args,
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


class Submitter:
    """Does what POST /workflows/start does, with one shared Prefect client."""

    def __init__(self, store: Any, user_id: str, deployment_id: UUID) -> None:
        from prefect.client.orchestration import get_client

        self.store = store
        self.user_id = user_id
        self.deployment_id = deployment_id
        self.client = get_client(sync_client=True)
        self.client.__enter__()
        self.lock = threading.Lock()

    def start(self) -> tuple[str, float]:
        """Create one job and its flow run; returns (job id, monotonic start)."""
        t0 = time.monotonic()
        job = self.store.create_job(user_id=self.user_id, workflow_id=WORKFLOW, input_data={"x": 1})
        run = self.client.create_flow_run_from_deployment(
            self.deployment_id, parameters={"job_id": job.id}, idempotency_key=job.id
        )
        self.store.set_flow_run(job.id, str(run.id))
        return job.id, t0

    def close(self) -> None:
        """Close the client."""
        self.client.__exit__(None, None, None)


def wait_done(store: Any, job_ids: list[str], timeout: float) -> dict[str, float]:
    """Poll the job rows every 10 ms; when each reached a final status (monotonic)."""
    done: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    while len(done) < len(job_ids) and time.monotonic() < deadline:
        pending = [j for j in job_ids if j not in done]
        now = time.monotonic()
        for job_id, status in store.statuses(pending).items():
            if status in ("completed", "failed"):
                done[job_id] = now
                if status == "failed":
                    print(f"  job {job_id} failed: {store.get_job(job_id)['error_message']}")
        time.sleep(0.01)
    return done


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) by nearest rank."""
    ordered = sorted(values)
    index = max(0, min(len(ordered) - 1, round(q * len(ordered) + 0.5) - 1))
    return ordered[index]


def latency(submitter: Submitter, n: int, timeout: float) -> list[float]:
    """N jobs one after the other: seconds from start to completed for each."""
    out: list[float] = []
    for _ in range(n):
        job_id, t0 = submitter.start()
        done = wait_done(submitter.store, [job_id], timeout)
        if job_id in done:
            out.append(done[job_id] - t0)
        else:
            print(f"  job {job_id} did not finish within {timeout:.0f} s")
    return out


def throughput(submitter: Submitter, jobs: int, timeout: float) -> tuple[float, float]:
    """Submit `jobs` as fast as 4 client threads can; (submitted per s, completed per s)."""
    t0 = time.monotonic()
    with ThreadPoolExecutor(4) as pool:
        started = list(pool.map(lambda _: submitter.start(), range(jobs)))
    submitted_in = time.monotonic() - t0
    done = wait_done(submitter.store, [j for j, _ in started], timeout)
    finished_in = max(done.values(), default=time.monotonic()) - t0
    if len(done) < jobs:
        print(f"  only {len(done)}/{jobs} finished within {timeout:.0f} s")
    return jobs / submitted_in, len(done) / finished_in


def main() -> None:
    """Run the comparison and print p50/p95 and jobs/s per mode."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=10, help="sequential jobs per mode")
    parser.add_argument("--modes", default="warm,process")
    parser.add_argument("--limit", type=int, default=10, help="worker concurrency limit")
    parser.add_argument(
        "--throughput-jobs", type=int, default=100, help="burst size (warm only; 0: skip)"
    )
    args = parser.parse_args()
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    log_dir = Path(tempfile.mkdtemp(prefix="bench-logs-"))
    with prefect_server() as api, database():
        from engine.database import shared_store
        from engine.settings import get_settings

        get_settings.cache_clear()
        store = shared_store()
        user_id = seed(store)
        print(f"Prefect {api}; logs in {log_dir}")
        for mode in args.modes.split(","):
            pool = f"bench-{mode}-{secrets.token_hex(2)}"
            deployment_id = deploy_warm(pool) if mode == "warm" else deploy_process(pool)
            submitter = Submitter(store, user_id, deployment_id)
            with worker(mode, pool, args.limit, log_dir):
                # The first job also waits for the worker to start; it is not counted.
                latency(submitter, 1, timeout=120)
                times = latency(submitter, args.n, timeout=60)
                if times:
                    print(
                        f"{mode:8s} latency n={len(times)}  p50={percentile(times, 0.5):.3f} s  "
                        f"p95={percentile(times, 0.95):.3f} s  max={max(times):.3f} s  "
                        f"mean={statistics.mean(times):.3f} s"
                    )
                if mode == "warm" and args.throughput_jobs:
                    submit_rate, done_rate = throughput(submitter, args.throughput_jobs, 300)
                    print(
                        f"{mode:8s} burst of {args.throughput_jobs}: submitted "
                        f"{submit_rate:.1f} jobs/s, completed {done_rate:.1f} jobs/s"
                    )
            submitter.close()


if __name__ == "__main__":
    main()
