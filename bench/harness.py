"""A throwaway local stack for bench scripts, with handles to break it on purpose.

`LocalStack` brings up what `supaflow up` runs, all of it private to one scratch folder in
`.data/bench/`: an embedded PostgreSQL (never the machine's shared server), migrations and
definitions, a Prefect server on a free port (SQLite in the scratch folder), the work pool and
the `run-workflow` deployment from prefect.yaml, a process worker, the REST API and a local
user token. Scripts then post jobs through the API, read job rows straight from the database,
run maintenance passes on demand, and stop or start the Prefect server, the PostgreSQL server
or a flow run's process.

    with LocalStack("my-bench", env=FAST_RECOVERY_ENV) as stack:
        job_id = stack.post_job("some_workflow", {"text": "hi"})
        stack.wait_settled([job_id], timeout=60)

The harness process itself takes the stack's environment (DATA_DIR, DATABASE_URL,
PREFECT_API_URL, ...) in `os.environ`, so run one stack per process. Everything it started is
stopped on exit; the scratch folder is removed unless `keep=True` (its `logs/` holds one log
per service).

Also here, for fault scripts and benchmarks alike: `CountingServer`, a local HTTP endpoint that
counts calls per job and step; `install_counting_workflow`, a three-step workflow calling it;
`count_reruns`, how many finished steps ran again; and `TrialResult` with `print_table` and
`write_report` for the tables and the JSON in `.data/bench/`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx
import psutil  # type: ignore[import-untyped]
import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from cli.stack import Service, stack_environment
from engine.settings import PROJECT_ROOT, get_settings

BENCH_DATA = PROJECT_ROOT / ".data" / "bench"
TERMINAL_STATUSES = frozenset({"completed", "failed"})

#: Settings that make crash detection and recovery take seconds instead of minutes. The
#: heartbeat window stays above the time a flow-run process takes to start on a loaded
#: 2-core machine (several seconds for a burst): a run a worker took (PENDING) does not beat
#: until its process is up, and a shorter window resubmits healthy runs.
FAST_RECOVERY_ENV: dict[str, str] = {
    "JOB_HEARTBEAT_SECONDS": "0.5",
    "HEARTBEAT_WINDOW_SECONDS": "10",
    "RESUBMIT_BACKOFF_SECONDS": "0",
    "DISPATCH_GRACE_SECONDS": "1",
    "HTTP_ALLOWLIST": "127.0.0.1",
    "PREFECT_WORKER_QUERY_SECONDS": "1",
    "PREFECT_WORKER_PREFETCH_SECONDS": "1",
    "RATE_LIMITS": "start=6000/minute;read=60000/minute;anon=6000/minute",
}

#: Variables of the caller's environment that would point the stack somewhere else (every
#: PREFECT_* variable is dropped as well).
_FOREIGN_ENV = (
    "DATABASE_URL",
    "PREFECT_API_URL",
    "PREFECT_HOME",
    "SUPABASE_URL",
    "SUPABASE_JWT_SECRET",
    "LOCAL_AUTH",
    "PREFECT_PROFILES_PATH",
)

_MAINTENANCE_SNIPPET = """
import json, sys
from flows.maintenance import maintenance
grace = None if sys.argv[2] == "default" else float(sys.argv[2])
result = maintenance(grace_seconds=grace)
with open(sys.argv[1], "w") as out:
    json.dump(result, out, default=str)
"""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)


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


class LocalStack:
    """PostgreSQL, Prefect server, deployment, process worker and API in one scratch folder.

    `start()` (or `with`) brings everything up; each part also has its own stop/start so a
    script can break one on purpose. `env` adds settings for every process of the stack
    (e.g. `FAST_RECOVERY_ENV`). `scheduled_maintenance` also deploys the maintenance flow
    with its 30 s schedule; by default only `run-workflow` is deployed and the script calls
    `run_maintenance()` itself, so recovery happens when the script says so.
    """

    def __init__(
        self,
        name: str,
        *,
        env: Mapping[str, str] | None = None,
        keep: bool = False,
        scheduled_maintenance: bool = False,
    ) -> None:
        self.name = name
        self.root = BENCH_DATA / f"{name}-{uuid.uuid4().hex[:8]}"
        self.log_dir = self.root / "logs"
        self.keep = keep
        self.scheduled_maintenance = scheduled_maintenance
        self.extra_env = dict(env or {})
        self.prefect_port = free_port()
        self.api_port = free_port()
        self.prefect_api_url = f"http://127.0.0.1:{self.prefect_port}/api"
        self.api_url = f"http://127.0.0.1:{self.api_port}"
        self.database_url = ""
        self.token = ""
        self.env: dict[str, str] = {}
        self._pg: Any = None
        self._services: dict[str, Service] = {}
        self._orphans: set[int] = set()

    # -- lifecycle ------------------------------------------------------------------------

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
        """Bring up the whole stack; returns self."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        # The stack runs on Prefect's defaults, whatever the caller's environment tunes
        # (a test session, for one, turns client retries off).
        for name in [*_FOREIGN_ENV, *(k for k in os.environ if k.startswith("PREFECT_"))]:
            os.environ.pop(name, None)
        os.environ.update(self.extra_env)
        os.environ["DATA_DIR"] = str(self.root)
        get_settings.cache_clear()
        self.start_postgres()
        self._sync_definitions()
        self.env = stack_environment(self.prefect_api_url, self.api_port, self.database_url)
        self.env.update(self.extra_env)
        self.env.update(
            {
                "PREFECT_UI_ENABLED": "false",
                "TMPDIR": str(self._tmp_dir()),
                "PREFECT_SERVER_DATABASE_CONNECTION_URL": (
                    f"sqlite+aiosqlite:///{self.root / 'prefect' / 'prefect.db'}"
                ),
            }
        )
        # The harness process acts as a client of the stack too (tokens, Prefect client).
        os.environ.update(self.env)
        get_settings.cache_clear()
        self.start_prefect()
        self.deploy()
        self.start_worker()
        self.start_api()
        self.token = self._mint_token()
        return self

    def close(self) -> None:
        """Stop every process the stack started, the PostgreSQL server, and (unless `keep`)
        remove the scratch folder."""
        for name in ("api", "worker", "prefect-server"):
            service = self._services.pop(name, None)
            if service is not None:
                self._stop_service(service)
        self._kill_orphans()
        if self._pg is not None:
            with contextlib.suppress(Exception):
                self._pg.cleanup()
            self._pg = None
        from engine.db.connection import close_shared_stores

        close_shared_stores()
        if not self.keep:
            shutil.rmtree(self.root, ignore_errors=True)

    def _tmp_dir(self) -> Path:
        path = self.root / "tmp"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _stop_service(self, service: Service) -> None:
        # Flow-run processes get their own session from the worker, so the process-group
        # signal does not reach them: remember them and end them after the worker.
        with contextlib.suppress(psutil.Error):
            self._orphans.update(
                p.pid for p in psutil.Process(service.proc.pid).children(recursive=True)
            )
        service.stop()

    def _kill_orphans(self) -> None:
        for pid in self._orphans:
            with contextlib.suppress(psutil.Error):
                psutil.Process(pid).kill()
        self._orphans.clear()

    def _start_service(self, name: str, args: list[str]) -> Service:
        service = Service(name, args, self.env, self.log_dir)
        self._services[name] = service
        return service

    def service(self, name: str) -> Service:
        """The running service `name` ("prefect-server", "worker" or "api")."""
        return self._services[name]

    # -- PostgreSQL -----------------------------------------------------------------------

    def start_postgres(self) -> None:
        """Start the embedded server in the scratch folder (first time: create the database,
        apply migrations); after `stop_postgres`, start it again on the same data and socket."""
        if self._pg is None:
            from engine.db.embedded import ensure_local_database, start_local_server

            settings = get_settings()
            self.database_url = ensure_local_database(settings)
            self._pg = start_local_server(settings)
            os.environ["DATABASE_URL"] = self.database_url
            get_settings.cache_clear()
            return
        with self._pg._lock:
            self._pg.ensure_postgres_running()

    def stop_postgres(self) -> None:
        """Stop the embedded server (`pg_ctl stop`, fast mode: open sessions are cut)."""
        if self._pg is not None:
            self._pg.stop()

    def restart_postgres(self, downtime_seconds: float = 1.0) -> float:
        """Stop PostgreSQL, wait `downtime_seconds`, start it again; returns seconds it was down."""
        started = time.monotonic()
        self.stop_postgres()
        time.sleep(downtime_seconds)
        self.start_postgres()
        return time.monotonic() - started

    def connect(self) -> psycopg.Connection[dict[str, Any]]:
        """A new autocommit connection to the stack's database (service role), dict rows.

        A fresh connection each time, so the harness's own reads never depend on a pool that
        a PostgreSQL restart broke.
        """
        return psycopg.connect(self.database_url, autocommit=True, row_factory=dict_row)

    def _sync_definitions(self) -> None:
        from cli.definition_files import sync_definitions
        from engine.db.connection import shared_store

        sync_definitions(shared_store())

    # -- Prefect --------------------------------------------------------------------------

    def start_prefect(self, timeout: float = 120) -> None:
        """Start the Prefect server on the stack's port and SQLite file; wait until healthy."""
        server = self._start_service(
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
        _wait_http(f"{self.prefect_api_url}/health", timeout=timeout, service=server)

    def stop_prefect(self) -> None:
        """Stop the Prefect server (SIGINT, like Ctrl-C); its SQLite database stays."""
        service = self._services.pop("prefect-server", None)
        if service is not None:
            service.stop()

    def prefect_client(self) -> Any:
        """A sync Prefect client of the stack's server (use it as a context manager)."""
        from prefect.client.orchestration import SyncPrefectClient

        return SyncPrefectClient(self.prefect_api_url)

    def _prefect_cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [_bin("prefect"), *args],
            env=self.env,
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )

    def deploy(self) -> None:
        """Create the process work pool and deploy prefect.yaml (run-workflow; maintenance
        too with `scheduled_maintenance`)."""
        self._prefect_cli("work-pool", "create", "local-process", "--type", "process")
        which = ["--all"] if self.scheduled_maintenance else ["--name", "run-workflow"]
        done = self._prefect_cli("--no-prompt", "deploy", *which)
        if done.returncode != 0:
            raise RuntimeError(
                f"prefect deploy failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
            )

    def start_worker(self) -> None:
        """Start a process worker on the local-process pool."""
        self._start_service(
            "worker",
            [_bin("prefect"), "worker", "start", "--pool", "local-process", "--type", "process"],
        )

    def stop_worker(self) -> None:
        """Stop the worker with SIGINT (it ignores SIGTERM for minutes) and its flow runs."""
        service = self._services.pop("worker", None)
        if service is not None:
            self._stop_service(service)
            self._kill_orphans()

    def flow_run_process(self, flow_run_id: str) -> psutil.Process | None:
        """The process the worker started for `flow_run_id`, if it is running."""
        worker = self._services.get("worker")
        if worker is None:
            return None
        with contextlib.suppress(psutil.Error):
            for proc in psutil.Process(worker.proc.pid).children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    if "prefect.engine" not in " ".join(proc.cmdline()):
                        continue
                    if proc.environ().get("PREFECT__FLOW_RUN_ID") == flow_run_id:
                        return proc
        return None

    def kill_flow_run(self, flow_run_id: str, timeout: float = 30) -> int:
        """SIGKILL the process running `flow_run_id` (waits for it to appear); returns its pid."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            proc = self.flow_run_process(flow_run_id)
            if proc is not None:
                proc.send_signal(signal.SIGKILL)
                with contextlib.suppress(psutil.Error):
                    proc.wait(10)
                return int(proc.pid)
            time.sleep(0.1)
        raise RuntimeError(f"no process runs flow run {flow_run_id}")

    def flow_run_state(self, flow_run_id: str) -> str | None:
        """Prefect's state type of a flow run (e.g. "RUNNING", "CRASHED"), None if unknown."""
        with self.prefect_client() as client:
            run = client.read_flow_run(uuid.UUID(flow_run_id))
        return run.state.type.value if run.state else None

    # -- API ------------------------------------------------------------------------------

    def start_api(self) -> None:
        """Start the REST API (`supaflow api`) and wait until it answers."""
        api = self._start_service("api", [_bin("supaflow"), "api", "--port", str(self.api_port)])
        _wait_http(f"{self.api_url}/health", timeout=60, service=api)

    def _mint_token(self) -> str:
        from cli.local_auth import mint_local_token
        from engine.db.connection import close_shared_stores

        token = mint_local_token("bench@example.com", ttl_seconds=24 * 3600)
        # Later reads use fresh connections (see `connect`); a pool left open here would
        # only hold connections a PostgreSQL restart breaks.
        close_shared_stores()
        return token

    def post_job(self, workflow_id: str, input_data: Any, *, timeout: float = 30) -> str:
        """POST /workflows/start as the local user; returns the job id (raises on non-2xx)."""
        answer = httpx.post(
            f"{self.api_url}/workflows/start",
            headers={"Authorization": f"Bearer {self.token}"},
            json={"workflow_id": workflow_id, "input_data": input_data},
            timeout=timeout,
        )
        answer.raise_for_status()
        return str(answer.json()["job_id"])

    def get_job(self, job_id: str) -> dict[str, Any]:
        """GET /jobs/{id} as the local user."""
        answer = httpx.get(
            f"{self.api_url}/jobs/{job_id}",
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=30,
        )
        answer.raise_for_status()
        return dict(answer.json())

    # -- jobs (read from the database) ----------------------------------------------------

    def jobs(self, job_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The rows of these jobs by id: status, resubmissions, flow_run_id, step_data,
        error_message, state_history, ..."""
        with self.connect() as conn:
            rows = conn.execute(
                "select id::text as id, status, resubmissions, max_retries,"
                " prefect_flow_run_id::text as flow_run_id, current_step_id, step_data,"
                " error_message, state_history from public.jobs where id = any(%s::uuid[])",
                [list(job_ids)],
            ).fetchall()
        return {r["id"]: r for r in rows}

    def statuses(self, job_ids: Sequence[str]) -> dict[str, str]:
        """Current status of each job."""
        return {job_id: row["status"] for job_id, row in self.jobs(job_ids).items()}

    def events(self, job_id: str) -> list[dict[str, Any]]:
        """The job's events in order (kind, step_id, attempt, detail, created_at)."""
        with self.connect() as conn:
            return conn.execute(
                "select id, kind, step_id, attempt, detail from public.job_events"
                " where job_id = %s order by id",
                [job_id],
            ).fetchall()

    def wait_event(self, job_id: str, kind: str, step_id: str | None, timeout: float) -> None:
        """Wait until the job has an event `kind` (for `step_id`); RuntimeError on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(
                e["kind"] == kind and (step_id is None or e["step_id"] == step_id)
                for e in self.events(job_id)
            ):
                return
            time.sleep(0.1)
        raise RuntimeError(f"job {job_id}: no {kind} event for step {step_id} in {timeout:.0f} s")

    def run_maintenance(self, grace_seconds: float | None = None) -> dict[str, Any]:
        """One maintenance pass (the real flow, in a new process, as the schedule runs it).

        Returns the flow's result, or `{"error": ...}` when the pass itself failed (for
        example while the Prefect server is down).
        """
        fd, out_name = tempfile.mkstemp(suffix=".json", dir=self._tmp_dir())
        os.close(fd)
        out = Path(out_name)
        with (self.log_dir / "maintenance.log").open("ab") as log:
            done = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    _MAINTENANCE_SNIPPET,
                    str(out),
                    "default" if grace_seconds is None else str(grace_seconds),
                ],
                env=self.env,
                cwd=PROJECT_ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                check=False,
                timeout=180,
            )
        try:
            if done.returncode != 0 or not out.stat().st_size:
                return {"error": f"maintenance exited with {done.returncode}; see maintenance.log"}
            return dict(json.loads(out.read_text()))
        finally:
            out.unlink(missing_ok=True)

    def wait_settled(
        self,
        job_ids: Sequence[str],
        *,
        timeout: float,
        maintenance_every: float | None = None,
        poll: float = 0.25,
    ) -> dict[str, str]:
        """Wait until every job is completed or failed, or `timeout` passes; returns the last
        statuses. With `maintenance_every`, run a maintenance pass at most that often while
        some job is unfinished (the schedule's job, done here on demand)."""
        deadline = time.monotonic() + timeout
        last_pass = time.monotonic()
        statuses = self.statuses(job_ids)
        while time.monotonic() < deadline:
            statuses = self.statuses(job_ids)
            if all(s in TERMINAL_STATUSES for s in statuses.values()):
                break
            if maintenance_every is not None and time.monotonic() - last_pass >= maintenance_every:
                self.run_maintenance()
                last_pass = time.monotonic()
            time.sleep(poll)
        return statuses


# -- a counting HTTP endpoint and a workflow calling it ------------------------------------


class CountingServer:
    """A local HTTP server counting calls to `/count/<job>/<step>`; answers `{"n": count}`.

    Steps of `install_counting_workflow` call it, so a step that runs twice for a job shows
    here as a count of 2: the external side effect is what is counted, not what the engine
    says it did.
    """

    def __init__(self) -> None:
        self.calls: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()
        counting = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = self.path.strip("/").split("/")
                if len(parts) != 3 or parts[0] != "count":
                    self.send_error(404)
                    return
                with counting._lock:
                    counting.calls[(parts[1], parts[2])] += 1
                    number = counting.calls[(parts[1], parts[2])]
                body = json.dumps({"n": number}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        """Base URL, e.g. http://127.0.0.1:PORT."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def hits(self, job_id: str) -> dict[str, int]:
        """Calls per step for one job."""
        with self._lock:
            return {step: n for (job, step), n in self.calls.items() if job == job_id}

    def close(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


#: Steps of the counting workflow, in order; the middle one is the long one.
COUNTING_STEPS = ("fetch", "wait", "notify")


def install_counting_workflow(
    stack: LocalStack, workflow_id: str, counter_url: str, *, delay_seconds: float
) -> None:
    """Insert (or replace) a workflow `fetch` -> `wait` -> `notify`: fetch and notify are
    http_request steps calling the counting server, wait is a delay of `delay_seconds`.

    Steps retry twice, 0.5 s apart, on the default retryable errors.
    """
    count_id = f"{workflow_id}-count"
    wait_id = f"{workflow_id}-wait"
    step_input = {"job.$": "$.job.id"}
    definition = {
        "retry": {"max_retries": 2, "strategy": "fixed", "initial_delay_seconds": 0.5},
        "steps": [
            {"id": "fetch", "transformer": count_id, "input": {**step_input, "step": "fetch"}},
            {"id": "wait", "transformer": wait_id, "input": step_input},
            {"id": "notify", "transformer": count_id, "input": {**step_input, "step": "notify"}},
        ],
        "output": {"fetched.$": "$.steps.fetch.body.n", "notified.$": "$.steps.notify.body.n"},
    }
    with stack.connect() as conn:
        conn.execute(
            "insert into public.transformers (id, type, description, config, target_function)"
            " values (%s, 'http_request', 'bench: counting endpoint', %s, 'execute-http-request'),"
            " (%s, 'delay', 'bench: the long step', %s, 'execute-delay')"
            " on conflict (id) do update set config = excluded.config",
            [
                count_id,
                Jsonb(
                    {
                        "url_template": counter_url + "/count/{job}/{step}",
                        "request_timeout_seconds": 10,
                    }
                ),
                wait_id,
                Jsonb({"seconds": delay_seconds}),
            ],
        )
        conn.execute(
            "insert into public.workflows (id, description, definition)"
            " values (%s, 'bench: counting workflow', %s)"
            " on conflict (id) do update set definition = excluded.definition",
            [workflow_id, Jsonb(definition)],
        )


def count_reruns(events: Iterable[Mapping[str, Any]], hits: Mapping[str, int]) -> int:
    """How many times a finished step ran again.

    Per step, the larger of: `step_started` events after the step's first `step_succeeded`
    event (the engine's record), and calls to the counting endpoint beyond the first (the
    side effect). A step cut off before its output was saved and then run again is not a
    re-run by the events; it is one by the endpoint if it had already made its call.
    """
    seen_success: set[str] = set()
    by_events: Counter[str] = Counter()
    for event in events:
        step = event.get("step_id")
        if step is None:
            continue
        if event["kind"] == "step_succeeded":
            seen_success.add(step)
        elif event["kind"] == "step_started" and step in seen_success:
            by_events[step] += 1
    steps = set(by_events) | set(hits)
    return sum(max(by_events[s], hits.get(s, 0) - 1, 0) for s in steps)


# -- trial reports --------------------------------------------------------------------------


@dataclass
class TrialResult:
    """Counts of one fault trial; `ok` says whether the property held."""

    trial: int
    posted: int = 0
    completed: int = 0
    failed: int = 0
    stuck: int = 0
    rerun_steps: int = 0
    resubmissions: int = 0
    seconds: float = 0.0
    ok: bool = False
    notes: list[str] = field(default_factory=list)
    #: Counts particular to one fault (printed under the table, kept in the JSON).
    extra: dict[str, Any] = field(default_factory=dict)

    def count(self, statuses: Mapping[str, str]) -> None:
        """Fill posted/completed/failed/stuck from final job statuses."""
        self.posted = len(statuses)
        self.completed = sum(1 for s in statuses.values() if s == "completed")
        self.failed = sum(1 for s in statuses.values() if s == "failed")
        self.stuck = self.posted - self.completed - self.failed

    def tally(self, stack: LocalStack, counter: CountingServer, job_ids: Sequence[str]) -> None:
        """Count the jobs' final statuses, re-run steps and resubmissions; note why each job
        was resubmitted and why any did not complete."""
        rows = stack.jobs(job_ids)
        self.count({job_id: rows[job_id]["status"] for job_id in job_ids})
        for job_id in job_ids:
            row = rows[job_id]
            self.rerun_steps += count_reruns(stack.events(job_id), counter.hits(job_id))
            self.resubmissions += int(row["resubmissions"])
            self.notes.extend(
                f"job {job_id[:8]}: resubmitted because {reason}"
                for reason in resubmit_reasons(row)
            )
            if row["status"] != "completed":
                self.notes.append(f"job {job_id[:8]} {row['status']}: {row['error_message']}")


_COLUMNS = (
    ("trial", "trial"),
    ("posted", "posted"),
    ("completed", "completed"),
    ("failed", "failed"),
    ("stuck", "stuck"),
    ("rerun_steps", "re-run steps"),
    ("resubmissions", "resubmitted"),
    ("seconds", "seconds"),
    ("ok", "ok"),
)


def format_table(results: Sequence[TrialResult]) -> str:
    """A Markdown table of the trials, with a total row."""
    header = "| " + " | ".join(title for _, title in _COLUMNS) + " |"
    rule = "|" + "|".join("---:" for _ in _COLUMNS) + "|"
    lines = [header, rule]
    for r in results:
        values = asdict(r)
        cells = [
            f"{values[k]:.1f}"
            if k == "seconds"
            else ("yes" if values[k] is True else "NO")
            if k == "ok"
            else str(values[k])
            for k, _ in _COLUMNS
        ]
        lines.append("| " + " | ".join(cells) + " |")
    totals = {
        k: sum(getattr(r, k) for r in results)
        for k, _ in _COLUMNS
        if k not in {"trial", "ok", "seconds"}
    }
    total_cells = [
        "all",
        *(str(totals[k]) for k, _ in _COLUMNS[1:-2]),
        f"{sum(r.seconds for r in results):.1f}",
        f"{sum(r.ok for r in results)}/{len(results)}",
    ]
    lines.append("| " + " | ".join(total_cells) + " |")
    return "\n".join(lines)


def print_table(title: str, results: Sequence[TrialResult]) -> None:
    """Print the trials table under a title, then each trial's notes."""
    print(f"\n{title}\n")
    print(format_table(results))
    for r in results:
        if r.extra:
            print(f"  trial {r.trial}: " + ", ".join(f"{k}={v}" for k, v in r.extra.items()))
        for note in r.notes:
            print(f"  trial {r.trial}: {note}")


def write_report(
    name: str, results: Sequence[TrialResult], path: Path | None = None, **extra: Any
) -> Path:
    """Write the JSON report (trials, totals, `extra` settings) to `path`, by default
    `.data/bench/<name>.json`; returns its path."""
    path = path or BENCH_DATA / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "name": name,
        "trials": [asdict(r) for r in results],
        "totals": {
            k: sum(getattr(r, k) for r in results)
            for k in (
                "posted",
                "completed",
                "failed",
                "stuck",
                "rerun_steps",
                "resubmissions",
            )
        },
        "all_ok": all(r.ok for r in results),
        **extra,
    }
    path.write_text(json.dumps(report, indent=2, default=str) + "\n")
    return path


def fault_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every fault script takes: --trials, --timeout, --keep, --report."""
    parser.add_argument("--trials", type=int, default=3, help="how many trials (default 3)")
    parser.add_argument(
        "--timeout", type=float, default=120.0, help="seconds a trial waits for its jobs"
    )
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder and logs")
    parser.add_argument(
        "--report", type=Path, default=None, help="JSON path (default .data/bench/<name>.json)"
    )


def run_trials(
    name: str,
    title: str,
    trials: int,
    trial: Callable[[int], TrialResult],
    report: Path | None = None,
    **extra: Any,
) -> int:
    """Run `trial(1..trials)`, print the table, write the JSON report (to `report`, by default
    `.data/bench/<name>.json`); exit status 0 if the property held in every trial.

    A trial that raises counts as violated, its error in its notes, and the next one runs.
    """
    results: list[TrialResult] = []
    for number in range(1, trials + 1):
        started = time.monotonic()
        try:
            result = trial(number)
        except Exception as exc:
            result = TrialResult(trial=number, notes=[f"error: {type(exc).__name__}: {exc}"])
        result.seconds = round(time.monotonic() - started, 1)
        results.append(result)
        print(
            f"trial {number}: posted={result.posted} completed={result.completed} "
            f"failed={result.failed} stuck={result.stuck} re-run={result.rerun_steps} "
            f"{result.seconds:.1f} s {'ok' if result.ok else 'VIOLATED'}",
            flush=True,
        )
    print_table(title, results)
    path = write_report(name, results, report, **extra)
    print(f"\nreport: {path}")
    return 0 if results and all(r.ok for r in results) else 1


def resubmit_reasons(row: Mapping[str, Any]) -> list[str]:
    """Why maintenance resubmitted this job, one reason per resubmission (state_history)."""
    return [
        str(entry.get("reason"))
        for entry in row.get("state_history") or []
        if entry.get("decision") == "resubmit"
    ]
