"""Shared parts of the performance benchmarks: one stack, the engine and raw Prefect side by side.

`BenchStack` brings up, in one scratch folder under `.data/bench/`, a Prefect server whose
database is a scratch PostgreSQL database on the machine's server (127.0.0.1:5432, created
and dropped here), a second scratch database for the engine (bootstrap + migrations), and on
demand: the engine's REST API (uvicorn subprocess, local-auth tokens), the engine's warm
worker, and the raw Prefect baselines (a no-op flow deployed on Prefect's process worker, and
the same flow on a warm worker with none of the engine around it). Engine and baselines share
the Prefect server, its database and the machine, in the same run.

Also: `machine_info`, `summarize` (percentiles), `check` (a target met or missed),
`print_table` and `write_report` (JSON in `.data/bench/<name>.json`).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import secrets
import shutil
import socket
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from uuid import UUID

import httpx
import psutil  # type: ignore[import-untyped,unused-ignore]
import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from cli.stack import Service
from engine.settings import PROJECT_ROOT, get_settings

BENCH_DATA = PROJECT_ROOT / ".data" / "bench"
PYTHON = sys.executable
ADMIN_URL = os.environ.get(
    "TEST_ADMIN_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
NOOP_TRANSFORMER = "bench-noop"
RAW_ENTRYPOINT = "bench/raw_flow.py:raw_noop_flow"
ENGINE_DEPLOYMENT = "run-workflow-warm"
TERMINAL = ("completed", "failed")

#: Variables of the caller's environment that would point the stack somewhere else.
_FOREIGN_ENV = (
    "DATABASE_URL",
    "PREFECT_API_URL",
    "PREFECT_HOME",
    "PREFECT_PROFILES_PATH",
    "PREFECT_SERVER_DATABASE_CONNECTION_URL",
    "SUPABASE_URL",
    "SUPABASE_JWT_SECRET",
    "SUPABASE_JWKS_URL",
    "LOCAL_AUTH",
    "PREFECT_DEPLOYMENT",
    "WARM_POOL",
)


def workflow_id(steps: int) -> str:
    """Id of the bench workflow of `steps` sequential no-op steps."""
    return f"bench_noop_{steps}"


# -- numbers ------------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The q-quantile (0..1) by nearest rank; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = max(0, min(len(ordered) - 1, int(-(-q * len(ordered) // 1)) - 1))
    return ordered[index]


def summarize(values: Sequence[float]) -> dict[str, float | int]:
    """n, p50, p95, p99, mean, min and max of `values` (rounded to 0.1 ms)."""
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "p50": round(percentile(values, 0.50), 4),
        "p95": round(percentile(values, 0.95), 4),
        "p99": round(percentile(values, 0.99), 4),
        "mean": round(sum(values) / len(values), 4),
        "min": round(min(values), 4),
        "max": round(max(values), 4),
    }


def check(name: str, value: float | None, op: str, limit: float, unit: str) -> dict[str, Any]:
    """A target: `value op limit` (op is "<=" or ">="); `met` is False when value is None."""
    met = value is not None and (value <= limit if op == "<=" else value >= limit)
    return {"target": name, "value": value, "op": op, "limit": limit, "unit": unit, "met": met}


def fmt(value: Any, digits: int = 3) -> str:
    """A table cell: floats rounded, None as '-'."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Print a Markdown table under a title."""
    print(f"\n{title}\n", flush=True)
    print("| " + " | ".join(headers) + " |")
    print("|" + "|".join("---" for _ in headers) + "|")
    for row in rows:
        print("| " + " | ".join(fmt(c) for c in row) + " |")
    sys.stdout.flush()


def print_targets(targets: Sequence[Mapping[str, Any]]) -> None:
    """Print the targets table (value, limit, met or MISSED)."""
    print_table(
        "Targets",
        ["target", "value", "limit", "met"],
        [
            (
                t["target"],
                f"{fmt(t['value'])} {t['unit']}",
                f"{t['op']} {t['limit']} {t['unit']}",
                "met" if t["met"] else "MISSED",
            )
            for t in targets
        ],
    )


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on: cores, CPU, memory, load, versions, date."""
    import prefect

    cpu = platform.processor() or "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    pg_version = None
    with contextlib.suppress(psycopg.Error), psycopg.connect(ADMIN_URL) as conn:
        row = conn.execute("show server_version").fetchone()
        pg_version = row[0] if row else None
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu,
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "prefect": prefect.__version__,
        "postgresql": pg_version,
        "platform": platform.platform(),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def write_report(name: str, data: Mapping[str, Any], path: Path | None = None) -> Path:
    """Write `data` (plus `name`) as JSON to `path`, by default `.data/bench/<name>.json`."""
    path = path or BENCH_DATA / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    # Other work on the machine competes for the same cores: record how busy it was.
    extra = {"load_average_at_end": [round(x, 2) for x in os.getloadavg()]}
    path.write_text(json.dumps({"name": name, **data, **extra}, indent=2, default=str) + "\n")
    print(f"\nreport: {path}", flush=True)
    return path


def common_arguments(parser: argparse.ArgumentParser) -> None:
    """Options every benchmark takes: --report and --keep."""
    parser.add_argument(
        "--report", type=Path, default=None, help="JSON path (default .data/bench/<name>.json)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder and logs")


@contextlib.contextmanager
def stderr_to(path: Path) -> Iterator[None]:
    """Send this process's file descriptor 2 to `path` (log lines of in-process flows)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with path.open("ab") as log:
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


# -- scratch databases --------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def create_database(prefix: str) -> tuple[str, str]:
    """Create an empty scratch database with a unique name; (name, URL)."""
    name = f"{prefix}_{secrets.token_hex(4)}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    return name, psycopg.conninfo.make_conninfo(ADMIN_URL, dbname=name)


def drop_database(name: str) -> None:
    """Drop a scratch database this module created (sessions still on it are ended)."""
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(
            sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
        )


def _bin(name: str) -> str:
    return str(Path(PYTHON).parent / name)


def _wait_http(url: str, *, timeout: float, service: Service | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if service is not None and not service.alive():
            raise RuntimeError(f"{service.name} exited; see {service.log_path}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code < 500:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


# -- the stack ----------------------------------------------------------------------------------


class BenchStack:
    """Prefect server (PostgreSQL), engine database, and on demand API, workers, baselines.

    The bench process takes the stack's environment into `os.environ` (it is a client of the
    Prefect server and of the engine database), so run one stack per process.
    """

    def __init__(
        self, name: str, *, keep: bool = False, env: Mapping[str, str] | None = None
    ) -> None:
        self.name = name
        self.keep = keep
        self.root = BENCH_DATA / f"{name}-{secrets.token_hex(4)}"
        self.log_dir = self.root / "logs"
        self.extra_env = dict(env or {})
        self.prefect_port = free_port()
        self.api_port = free_port()
        self.prefect_api_url = f"http://127.0.0.1:{self.prefect_port}/api"
        self.api_url = f"http://127.0.0.1:{self.api_port}"
        self.warm_pool = f"bench-warm-{secrets.token_hex(3)}"
        self.database_url = ""
        self.prefect_database_url = ""
        self.env: dict[str, str] = {}
        self._databases: list[str] = []
        self._services: list[Service] = []
        self._orphans: set[int] = set()

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def start(self) -> Self:
        """Scratch databases, the environment, the Prefect server and the no-op workflows."""
        from engine.db.migrate import apply_migrations

        if "prefect" in sys.modules:
            # Prefect reads its settings once, at import: imported before the environment
            # below exists, its clients would talk to a temporary server of their own.
            raise RuntimeError("BenchStack.start() must run before prefect is imported")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        (self.root / "tmp").mkdir(exist_ok=True)
        engine_db, self.database_url = create_database("bench_engine")
        self._databases.append(engine_db)
        prefect_db, prefect_url = create_database("bench_prefect")
        self._databases.append(prefect_db)
        info = psycopg.conninfo.conninfo_to_dict(prefect_url)
        self.prefect_database_url = prefect_url
        asyncpg_url = (
            f"postgresql+asyncpg://{info.get('user', 'postgres')}@{info.get('host', '127.0.0.1')}"
            f":{info.get('port', 5432)}/{prefect_db}"
        )
        apply_migrations(self.database_url, bootstrap=True)
        for name in _FOREIGN_ENV:
            os.environ.pop(name, None)
        self.env = {
            **os.environ,
            "DATA_DIR": str(self.root),
            "DATABASE_URL": self.database_url,
            "PREFECT_API_URL": self.prefect_api_url,
            "PREFECT_HOME": str(self.root / "prefect"),
            "PREFECT_SERVER_DATABASE_CONNECTION_URL": asyncpg_url,
            "PREFECT_UI_ENABLED": "false",
            "DO_NOT_TRACK": "1",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "TMPDIR": str(self.root / "tmp"),
            "SUPABASE_URL": self.api_url,
            "LOCAL_AUTH": "true",
            # The benchmarks measure the engine, not the rate limiter refusing them.
            "RATE_LIMITS": "start=1000000/minute;read=1000000/minute;anon=1000000/minute",
            "WARM_POOL": self.warm_pool,
            "PREFECT_DEPLOYMENT": f"run-workflow/{ENGINE_DEPLOYMENT}",
            "SUPAFLOW_PROJECT_DIR": str(PROJECT_ROOT),
            "SUPAFLOW_PYTHON": PYTHON,
            **self.extra_env,
        }
        os.environ.update(self.env)
        get_settings.cache_clear()
        server = self._start(
            "prefect-server",
            [
                _bin("prefect"),
                "server",
                "start",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.prefect_port),
            ],
        )
        _wait_http(f"{self.prefect_api_url}/health", timeout=180, service=server)
        self.install_noop_workflow(3)
        return self

    def close(self) -> None:
        """Stop every process started here, close pools, drop the scratch databases and
        (unless `keep`) remove the scratch folder."""
        for service in reversed(self._services):
            self._stop(service)
        self._services.clear()
        for pid in self._orphans:
            with contextlib.suppress(psutil.Error):
                psutil.Process(pid).kill()
        from engine.db.connection import close_shared_stores

        close_shared_stores()
        for name in self._databases:
            with contextlib.suppress(psycopg.Error):
                drop_database(name)
        self._databases.clear()
        if not self.keep:
            shutil.rmtree(self.root, ignore_errors=True)
        else:
            print(f"kept {self.root}", flush=True)

    # -- processes ------------------------------------------------------------------------

    def _start(self, name: str, args: list[str], env: Mapping[str, str] | None = None) -> Service:
        service = Service(name, args, {**self.env, **(env or {})}, self.log_dir)
        self._services.append(service)
        return service

    def _stop(self, service: Service) -> None:
        # Flow-run processes of a process worker run in their own session: remember them.
        with contextlib.suppress(psutil.Error):
            self._orphans.update(
                p.pid for p in psutil.Process(service.proc.pid).children(recursive=True)
            )
        service.stop()

    def stop(self, service: Service) -> None:
        """Stop one service started here (and the flow-run processes it started)."""
        self._stop(service)
        with contextlib.suppress(ValueError):
            self._services.remove(service)
        for pid in list(self._orphans):
            with contextlib.suppress(psutil.Error):
                psutil.Process(pid).kill()
            self._orphans.discard(pid)

    def start_api(self, env: Mapping[str, str] | None = None) -> Service:
        """The engine's REST API (`supaflow api`, uvicorn), once it answers /health; `env`
        overrides settings of this process only."""
        api = self._start("api", [_bin("supaflow"), "api", "--port", str(self.api_port)], env)
        _wait_http(f"{self.api_url}/health", timeout=90, service=api)
        return api

    def start_warm_worker(
        self,
        pool: str | None = None,
        *,
        limit: int = 10,
        query_seconds: float = 10.0,
        listen: bool = True,
        name: str = "warm-worker",
    ) -> Service:
        """A warm worker on `pool` (default: the engine's pool)."""
        args = [
            PYTHON,
            "-m",
            "worker",
            "--pool",
            pool or self.warm_pool,
            "--limit",
            str(limit),
            "--query-seconds",
            str(query_seconds),
        ]
        if not listen:
            args.append("--no-listen")
        return self._start(name, args)

    def start_process_worker(
        self, pool: str, *, limit: int, query_seconds: float = 0.5, name: str = "process-worker"
    ) -> Service:
        """Prefect's process worker on `pool`, polling every `query_seconds`."""
        return self._start(
            name,
            [
                _bin("prefect"),
                "worker",
                "start",
                "--pool",
                pool,
                "--type",
                "process",
                "--limit",
                str(limit),
            ],
            env={
                "PREFECT_WORKER_QUERY_SECONDS": str(query_seconds),
                "PREFECT_WORKER_PREFETCH_SECONDS": "1",
            },
        )

    # -- deployments ----------------------------------------------------------------------

    def deploy_engine(self) -> UUID:
        """The engine's run-workflow deployment on the engine's warm pool; its id."""
        from worker.deployments import ensure_warm_deployment

        full = ensure_warm_deployment(self.warm_pool, ENGINE_DEPLOYMENT)
        return self.deployment_id(full)

    def deploy_raw_warm(self, pool: str) -> UUID:
        """The raw no-op flow on a warm pool (no engine code runs for it); its id."""
        import anyio

        from worker.deployments import ensure_warm_deployment_async

        full = anyio.run(
            lambda: ensure_warm_deployment_async(pool, "raw-noop-warm", entrypoint=RAW_ENTRYPOINT)
        )
        return self.deployment_id(full)

    def deploy_raw_process(self, pool: str) -> UUID:
        """A process pool and the raw no-op flow deployed on it the fast way (the deployment
        sets `job_variables.command`, so a run starts one Python, not two); its id."""
        import anyio
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.actions import WorkPoolCreate
        from prefect.exceptions import ObjectAlreadyExists
        from prefect.utilities.callables import parameter_schema
        from prefect.workers.process import ProcessWorker
        from raw_flow import raw_noop_flow

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
                flow_id = await client.create_flow_from_name(raw_noop_flow.name)
                return await client.create_deployment(
                    flow_id=flow_id,
                    name="raw-noop-process",
                    entrypoint=RAW_ENTRYPOINT,
                    work_pool_name=pool,
                    work_queue_name="default",
                    parameter_openapi_schema=parameter_schema(raw_noop_flow).model_dump(),
                    pull_steps=[
                        {
                            "prefect.deployments.steps.set_working_directory": {
                                "directory": str(PROJECT_ROOT)
                            }
                        }
                    ],
                    job_variables={"command": f"{PYTHON} -m prefect.engine"},
                )

        return anyio.run(create)

    def deployment_id(self, full_name: str) -> UUID:
        """Id of the deployment `flow/deployment`."""
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as client:
            return client.read_deployment_by_name(full_name).id

    # -- data -----------------------------------------------------------------------------

    def connect(self) -> psycopg.Connection[dict[str, Any]]:
        """A new autocommit connection to the engine database (dict rows)."""
        return psycopg.connect(self.database_url, autocommit=True, row_factory=dict_row)

    def prefect_connect(self) -> psycopg.Connection[dict[str, Any]]:
        """A new autocommit connection to the Prefect server's database (read-only use)."""
        return psycopg.connect(self.prefect_database_url, autocommit=True, row_factory=dict_row)

    def install_noop_workflow(self, steps: int) -> str:
        """A workflow of `steps` sequential no-op (json_transform) steps; its id."""
        from engine.db.connection import shared_store

        store = shared_store()
        store.upsert_transformer(
            NOOP_TRANSFORMER,
            type_="json_transform",
            description="bench: returns its input",
            config={"template": {"value.$": "$.input"}},
            target_function="execute-json-transform",
        )
        chain = [{"id": "s1", "transformer": NOOP_TRANSFORMER, "input": {"x.$": "$.input.x"}}]
        for i in range(2, steps + 1):
            chain.append(
                {
                    "id": f"s{i}",
                    "transformer": NOOP_TRANSFORMER,
                    "input": {"x.$": f"$.steps.s{i - 1}.value.x"},
                }
            )
        wid = workflow_id(steps)
        store.upsert_workflow(
            wid,
            f"bench: {steps} no-op steps",
            {"steps": chain, "output": {"x.$": f"$.steps.s{steps}.value.x"}},
        )
        return wid

    def token(self, email: str = "bench@example.com") -> str:
        """A local access token for `email` (the user is created if missing)."""
        from cli.local_auth import mint_local_token

        return mint_local_token(email, ttl_seconds=24 * 3600)

    def job_outcomes(self, job_ids: Sequence[str]) -> dict[str, Any]:
        """Counts by status of these jobs and the last completed_at (epoch seconds)."""
        with self.connect() as conn:
            rows = conn.execute(
                "select status, count(*) as n, extract(epoch from max(completed_at)) as last"
                " from public.jobs where id = any(%s::uuid[]) group by status",
                [list(job_ids)],
            ).fetchall()
        counts = {r["status"]: int(r["n"]) for r in rows}
        last = max((float(r["last"]) for r in rows if r["last"] is not None), default=None)
        return {"counts": counts, "last_done": last}

    def flow_run_outcomes(self, flow_run_ids: Sequence[str]) -> dict[str, Any]:
        """Counts by state type of these flow runs and the last end_time (epoch seconds),
        read from the Prefect server's database."""
        with self.prefect_connect() as conn:
            rows = conn.execute(
                "select state_type, count(*) as n, extract(epoch from max(end_time)) as last"
                " from flow_run where id = any(%s::uuid[]) group by state_type",
                [list(flow_run_ids)],
            ).fetchall()
        counts = {str(r["state_type"]): int(r["n"]) for r in rows}
        last = max((float(r["last"]) for r in rows if r["last"] is not None), default=None)
        return {"counts": counts, "last_done": last}


def wait_jobs(
    stack: BenchStack, job_ids: Sequence[str], *, timeout: float, poll: float = 0.02
) -> dict[str, float]:
    """Poll the job rows until each is completed or failed; monotonic time each was seen so.

    One indexed query per poll, read straight from the database (cheap for both sides).
    """
    done: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    with stack.connect() as conn:
        while len(done) < len(job_ids) and time.monotonic() < deadline:
            pending = [j for j in job_ids if j not in done]
            rows = conn.execute(
                "select id::text as id from public.jobs where id = any(%s::uuid[])"
                " and status in ('completed', 'failed')",
                [pending],
            ).fetchall()
            now = time.monotonic()
            for row in rows:
                done[row["id"]] = now
            if len(done) < len(job_ids):
                time.sleep(poll)
    return done


def wait_flow_runs(
    stack: BenchStack, flow_run_ids: Sequence[str], *, timeout: float, poll: float = 0.02
) -> dict[str, float]:
    """Poll Prefect's flow_run rows until each is in a final state; monotonic time each was
    seen so (the same kind of read as `wait_jobs`, on the Prefect server's database)."""
    done: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    final = ["COMPLETED", "FAILED", "CRASHED", "CANCELLED"]
    with stack.prefect_connect() as conn:
        while len(done) < len(flow_run_ids) and time.monotonic() < deadline:
            pending = [j for j in flow_run_ids if j not in done]
            rows = conn.execute(
                "select id::text as id from flow_run where id = any(%s::uuid[])"
                " and state_type::text = any(%s)",
                [pending, final],
            ).fetchall()
            now = time.monotonic()
            for row in rows:
                done[row["id"]] = now
            if len(done) < len(flow_run_ids):
                time.sleep(poll)
    return done


class EngineClient:
    """POST /workflows/start and GET /jobs/{id} with one user's token (sync, keep-alive)."""

    def __init__(self, api_url: str, token: str) -> None:
        self.http = httpx.Client(
            base_url=api_url, headers={"Authorization": f"Bearer {token}"}, timeout=30
        )

    def start(self, workflow: str, input_data: Any) -> str:
        """Start a job; its id."""
        response = self.http.post(
            "/workflows/start", json={"workflow_id": workflow, "input_data": input_data}
        )
        response.raise_for_status()
        return str(response.json()["job_id"])

    def close(self) -> None:
        """Close the connection pool."""
        self.http.close()


def run_raw(deployment_id: UUID, parameters: Mapping[str, Any]) -> str:
    """Raw Prefect: `run_deployment(timeout=0)`; the flow run id."""
    from prefect.deployments import run_deployment

    run: Any = run_deployment(
        deployment_id, parameters=dict(parameters), timeout=0, as_subflow=False
    )
    return str(run.id)


# -- CPU accounting -----------------------------------------------------------------------------


def _tree_cpu(pid: int) -> float:
    """CPU seconds of a process, its reaped children and its live descendants."""
    try:
        root = psutil.Process(pid)
        times = root.cpu_times()
        total = times.user + times.system + times.children_user + times.children_system
        for child in root.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                child_times = child.cpu_times()
                total += child_times.user + child_times.system
        return float(total)
    except psutil.Error:
        return 0.0


def _postgres_cpu() -> float:
    """CPU seconds of every PostgreSQL server process on the machine (shared server: other
    databases' work counts too)."""
    total = 0.0
    for proc in psutil.process_iter(["name"]):
        if proc.info.get("name") in ("postgres", "postmaster"):
            with contextlib.suppress(psutil.Error):
                times = proc.cpu_times()
                total += times.user + times.system
    return total


def cpu_snapshot(stack: BenchStack) -> dict[str, float]:
    """CPU seconds so far of each running service, of PostgreSQL and of this process."""
    snap = {s.name: _tree_cpu(s.proc.pid) for s in stack._services if s.alive()}
    snap["postgresql (all databases)"] = _postgres_cpu()
    own = psutil.Process().cpu_times()
    snap["bench client"] = float(own.user + own.system)
    snap["machine (all processes)"] = float(sum(psutil.cpu_times()[:3]))
    return snap


def cpu_delta(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
    """CPU seconds spent between two snapshots, per component."""
    spent = {k: round(after[k] - before.get(k, 0.0), 2) for k in after}
    machine = spent.get("machine (all processes)", 0.0)
    ours = sum(v for k, v in spent.items() if k != "machine (all processes)")
    # Whatever else ran on the machine meanwhile (other users' work competes for the CPUs).
    spent["other processes"] = round(max(machine - ours, 0.0), 2)
    return spent
