"""`supaflow up`: the whole engine on one machine, on its embedded defaults.

PostgreSQL: DATABASE_URL, or the embedded server in DATA_DIR. Prefect: PREFECT_API_URL, or
a local Prefect server (SQLite) started here. Then a process worker, the REST API, a local
token, and the offline demo job, followed until it completes. Ctrl-C stops what was started.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console

from engine.settings import PROJECT_ROOT, get_settings

console = Console()
DEMO_WORKFLOW = "demo_offline_v1"
DEMO_INPUT = {"text": "Supaflow runs multi-step jobs for Supabase apps, step by step."}


class Service:
    """A child process with its log file; stopped with SIGINT, then SIGTERM, then SIGKILL."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            args,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=PROJECT_ROOT,
            start_new_session=True,
        )

    def alive(self) -> bool:
        """Whether the process still runs."""
        return self.proc.poll() is None

    def stop(self) -> None:
        """Stop the process group (prefect workers ignore SIGTERM for minutes; SIGINT works)."""
        for sig, wait in ((signal.SIGINT, 10), (signal.SIGTERM, 5), (signal.SIGKILL, 5)):
            if not self.alive():
                break
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                continue
        self._log.close()


def _wait_http(url: str, *, timeout: float, service: Service | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if service is not None and not service.alive():
            raise RuntimeError(f"{service.name} exited; see {service.log_path}")
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


def _bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def stack_environment(prefect_api_url: str, api_port: int, database_url: str) -> dict[str, str]:
    """The environment every child process of the local stack shares."""
    settings = get_settings()
    data_dir = settings.data_dir
    env = dict(os.environ)
    env.update(
        {
            "DATA_DIR": str(data_dir),
            "DATABASE_URL": database_url,
            "PREFECT_API_URL": prefect_api_url,
            "PREFECT_HOME": str(data_dir / "prefect"),
            "DO_NOT_TRACK": "1",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_UI_ENABLED": "true",
            "SUPAFLOW_PROJECT_DIR": str(PROJECT_ROOT),
            "SUPAFLOW_PYTHON": sys.executable,
            "PREFECT_WORKER_QUERY_SECONDS": env.get("PREFECT_WORKER_QUERY_SECONDS", "1"),
            "PREFECT_WORKER_PREFETCH_SECONDS": env.get("PREFECT_WORKER_PREFETCH_SECONDS", "1"),
        }
    )
    if settings.log_json:
        from engine.logging_json import prefect_logging_env

        env.update(prefect_logging_env())
    if not settings.supabase_jwt_secret and "SUPABASE_URL" not in os.environ:
        # Local auth: the API serves the local key's JWKS at the Supabase Auth path.
        env["SUPABASE_URL"] = f"http://127.0.0.1:{api_port}"
        env["LOCAL_AUTH"] = "true"
    return env


def _follow_job(api: str, token: str, job_id: str, timeout: float) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    last: tuple[Any, ...] = ()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = httpx.get(f"{api}/jobs/{job_id}", headers=headers, timeout=10).json()
        now = (job["status"], job.get("current_step_id"), len(job.get("step_data") or {}))
        if now != last:
            console.print(
                f"  job {job_id[:8]}  status=[bold]{job['status']}[/bold]  "
                f"step={job.get('current_step_id')}  steps done={now[2]}"
            )
            last = now
        if job["status"] in ("completed", "failed"):
            return dict(job)
        time.sleep(0.25)
    raise RuntimeError(f"job {job_id} did not finish within {timeout:.0f} s")


def _stop_all(services: list[Service]) -> None:
    for service in reversed(services):
        service.stop()


def run_stack(*, demo: bool, wait: bool, api_port: int, prefect_port: int) -> int:
    """Start everything, run the demo, wait for Ctrl-C; 0 when the demo job completed."""
    from cli.definition_files import sync_definitions
    from cli.local_auth import mint_local_token
    from engine.db.connection import resolve_database_url, shared_store
    from engine.db.migrate import apply_migrations

    settings = get_settings()
    log_dir = settings.data_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    code = 0
    with ExitStack() as stack:
        services: list[Service] = []
        stack.callback(_stop_all, services)

        console.print("[bold]1/6[/bold] PostgreSQL")
        database_url = resolve_database_url(settings)
        applied = apply_migrations(database_url, bootstrap=not settings.database_url)
        console.print(f"      migrations applied now: {len(applied)}")
        changed = sync_definitions(shared_store(settings))
        console.print(f"      definitions synced: {changed}")

        external_prefect = os.environ.get("PREFECT_API_URL")
        prefect_api = external_prefect or f"http://127.0.0.1:{prefect_port}/api"
        env = stack_environment(prefect_api, api_port, database_url)
        os.environ.update({k: env[k] for k in ("PREFECT_API_URL", "PREFECT_HOME", "DO_NOT_TRACK")})

        if not external_prefect:
            console.print("[bold]2/6[/bold] Prefect server (SQLite, first start runs migrations)")
            server = Service(
                "prefect-server",
                [
                    _bin("prefect"),
                    "server",
                    "start",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(prefect_port),
                ],
                env,
                log_dir,
            )
            services.append(server)
            _wait_http(f"{prefect_api}/health", timeout=120, service=server)
        else:
            console.print(f"[bold]2/6[/bold] Prefect at {prefect_api}")

        console.print("[bold]3/6[/bold] deployments and worker")
        subprocess.run(
            [_bin("prefect"), "work-pool", "create", "local-process", "--type", "process"],
            env=env,
            cwd=PROJECT_ROOT,
            capture_output=True,
            check=False,
        )
        deploy = subprocess.run(
            [_bin("prefect"), "--no-prompt", "deploy", "--all"],
            env=env,
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
        if deploy.returncode != 0:
            console.print(deploy.stdout[-3000:], deploy.stderr[-3000:])
            raise RuntimeError("prefect deploy failed")
        if settings.worker_mode == "warm":
            # Every component that starts runs (API, maintenance) must use the warm deployment.
            env["PREFECT_DEPLOYMENT"] = "run-workflow/run-workflow-warm"
        # The process worker runs the scheduled maintenance flow (and, in process mode, jobs).
        services.append(
            Service(
                "process-worker",
                [
                    _bin("prefect"),
                    "worker",
                    "start",
                    "--pool",
                    "local-process",
                    "--type",
                    "process",
                ],
                env,
                log_dir,
            )
        )
        if settings.worker_mode == "warm":
            # Jobs run in a warm worker: imports done and pools open before any run arrives,
            # flow runs in threads, woken by PostgreSQL NOTIFY when the API creates a run.
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "worker",
                    "--pool",
                    settings.warm_pool,
                    "--deploy-only",
                ],
                env=env,
                cwd=PROJECT_ROOT,
                check=True,
                capture_output=True,
            )
            services.append(
                Service(
                    "warm-worker",
                    [
                        sys.executable,
                        "-m",
                        "worker",
                        "--pool",
                        settings.warm_pool,
                        "--limit",
                        str(settings.worker_limit),
                        "--query-seconds",
                        "10",
                    ],
                    env,
                    log_dir,
                )
            )
        console.print(f"      worker mode: {settings.worker_mode}")

        console.print("[bold]4/6[/bold] REST API")
        api_url = f"http://127.0.0.1:{api_port}"
        api = Service("api", [_bin("supaflow"), "api", "--port", str(api_port)], env, log_dir)
        services.append(api)
        _wait_http(f"{api_url}/health", timeout=60, service=api)

        console.print("[bold]5/6[/bold] local user token")
        os.environ.update({k: env[k] for k in ("SUPABASE_URL",) if k in env})
        get_settings.cache_clear()
        token = mint_local_token("demo@example.com", ttl_seconds=24 * 3600)
        token_path = settings.data_dir / "demo-token.txt"
        token_path.write_text(token + "\n")
        token_path.chmod(0o600)

        if demo:
            console.print(f"[bold]6/6[/bold] demo job: POST /workflows/start {DEMO_WORKFLOW}")
            started = httpx.post(
                f"{api_url}/workflows/start",
                headers={"Authorization": f"Bearer {token}"},
                json={"workflow_id": DEMO_WORKFLOW, "input_data": DEMO_INPUT},
                timeout=30,
            )
            started.raise_for_status()
            job_id = started.json()["job_id"]
            job = _follow_job(api_url, token, job_id, timeout=300)
            console.print_json(json.dumps(job))
            code = 0 if job["status"] == "completed" else 1

        ui = prefect_api.removesuffix("/api")
        console.print(f"\nPrefect UI:  {ui}")
        console.print(f"API docs:    {api_url}/docs")
        console.print(f"Token:       {token_path} (user demo@example.com)")
        console.print(f"Logs:        {log_dir}")
        if wait:
            console.print("\nRunning. Press Ctrl-C to stop everything this command started.")
            try:
                while all(s.alive() for s in services):
                    time.sleep(1)
                dead = [s.name for s in services if not s.alive()]
                console.print(f"[red]stopped because {dead} exited[/red]")
                code = 1
            except KeyboardInterrupt:
                console.print("\nstopping…")
    return code
