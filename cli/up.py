"""`supaflow up`: the local stack on its embedded defaults, plus the offline demo job.

PostgreSQL: DATABASE_URL, or the embedded server in DATA_DIR. Prefect: PREFECT_API_URL, or a
local Prefect server started here, on a database `prefect` of the embedded server (SQLite with
LOCAL_PREFECT_DATABASE=sqlite, or when DATABASE_URL points elsewhere). Then the work pools,
the deployments of prefect.yaml, a process worker (maintenance; jobs too with
WORKER_MODE=process), the warm worker, the REST API, a local token, and the demo job, followed
until it completes. Each step prints the seconds it took.
Independent parts start side by side (the Prefect server boots while the database migrates;
workers and API start while prefect.yaml deploys). Ctrl-C, SIGTERM, SIGHUP or a service that
exits stops everything that was started, the embedded PostgreSQL included.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console

from cli.services import PortInUseError, require_free_port, stop_on_signals
from cli.stack import WARM_DEPLOYMENT, LocalStack
from engine.errors import ConfigurationError
from engine.settings import Settings, get_settings

# soft_wrap: printed commands and paths stay on one line, so they can be copied as printed.
console = Console(soft_wrap=True)
DEMO_WORKFLOW = "demo_offline_v1"
DEMO_INPUT = {"text": "Supaflow runs multi-step jobs for Supabase apps, step by step."}


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


def operator_token(stack: LocalStack, settings: Settings) -> Path:
    """Give the stack's API an operator token (the operator endpoints are closed without one).

    METRICS_TOKEN from the environment when set; otherwise a random one kept in
    DATA_DIR/metrics-token.txt, so it stays the same across restarts. Returns that file.
    """
    path = settings.data_dir / "metrics-token.txt"
    token = os.environ.get("METRICS_TOKEN") or (path.read_text().strip() if path.exists() else "")
    if not token:
        token = secrets.token_urlsafe(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(token + "\n")
    path.chmod(0o600)
    stack.env["METRICS_TOKEN"] = token
    return path


class _Steps:
    """Prints the numbered steps of `up`, each with the seconds the one before it took."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.number = 0
        self.began = self.started = time.monotonic()

    def next(self, title: str) -> None:
        now = time.monotonic()
        if self.number:
            console.print(f"      [dim]{now - self.started:.1f} s[/dim]")
        self.number += 1
        self.started = now
        console.print(f"[bold]{self.number}/{self.total}[/bold] {title}")

    def done(self) -> None:
        now = time.monotonic()
        console.print(
            f"      [dim]{now - self.started:.1f} s (all steps: {now - self.began:.1f} s)[/dim]"
        )


def _start(stack: LocalStack, settings: Settings, steps: _Steps) -> None:
    """Steps 1 to 3: database, Prefect, pools, deployments, workers, the API answering."""
    steps.next("PostgreSQL")
    stack.start_database(url=settings.database_url or None)
    prefect_database = None
    if not stack.external_prefect:
        # Boots (its own migrations on a new database) while ours migrate.
        prefect_database = stack.prefect_database()
        stack.start_prefect(database_url=prefect_database)
    applied, changed = stack.migrate(bootstrap=not settings.database_url)
    console.print(f"      migrations applied now: {len(applied)}")
    outcomes = Counter(change.outcome for change in changed)
    summary = ", ".join(f"{n} {outcome}" for outcome, n in outcomes.items()) or "unchanged"
    console.print(f"      definitions: {summary}")
    if stack.external_prefect:
        steps.next(f"Prefect at {stack.prefect_api_url}")
    else:
        where = "PostgreSQL database prefect" if prefect_database else "SQLite"
        steps.next(f"Prefect server ({where})")
        stack.wait_prefect(timeout=120)

    steps.next("deployments, workers and the REST API")
    warm = settings.worker_mode == "warm"
    if warm:
        # Every component that starts runs (API, maintenance) must use the warm deployment.
        stack.env["PREFECT_DEPLOYMENT"] = WARM_DEPLOYMENT
    # The process worker runs the scheduled maintenance flow (and, in process mode, jobs).
    # In warm mode jobs run in a warm worker: imports done and pools open before any run
    # arrives, flow runs in threads, woken by PostgreSQL NOTIFY when the API creates a run.
    stack.start_engine(warm_limit=settings.worker_limit if warm else None)
    console.print(f"      worker mode: {settings.worker_mode}")


def start_job(api_url: str, token: str, workflow: str, input_data: Any, timeout: float = 30) -> str:
    """POST /workflows/start with a user's token; the job id (raises on non-2xx)."""
    body = {"workflow_id": workflow, "input_data": input_data}
    headers = {"Authorization": f"Bearer {token}"}
    answer = httpx.post(f"{api_url}/workflows/start", headers=headers, json=body, timeout=timeout)
    answer.raise_for_status()
    return str(answer.json()["job_id"])


def _demo(stack: LocalStack, token: str, steps: _Steps) -> int:
    """Last step: the demo job through the API, followed to its end; 0 when it completed."""
    steps.next(f"demo job: POST /workflows/start {DEMO_WORKFLOW}")
    job_id = start_job(stack.api_url, token, DEMO_WORKFLOW, DEMO_INPUT)
    job = _follow_job(stack.api_url, token, job_id, timeout=300)
    console.print_json(json.dumps(job))
    return 0 if job["status"] == "completed" else 1


def _serve(stack: LocalStack, settings: Settings, *, demo: bool, wait: bool) -> int:
    metrics_token_path = operator_token(stack, settings)
    steps = _Steps(5 if demo else 4)
    _start(stack, settings, steps)
    steps.next("local user token")
    token = stack.mint_token("demo@example.com")
    token_path = settings.data_dir / "demo-token.txt"
    token_path.write_text(token + "\n")
    token_path.chmod(0o600)
    code = _demo(stack, token, steps) if demo else 0
    steps.done()

    console.print(f"\nPrefect UI:  {stack.prefect_api_url.removesuffix('/api')}")
    console.print(f"API docs:    {stack.api_url}/docs")
    console.print(f"Token:       {token_path} (user demo@example.com)")
    console.print(
        f'Metrics:     curl -H "Authorization: Bearer $(cat {metrics_token_path})" '
        f"{stack.api_url}/metrics"
    )
    console.print(f"Logs:        {stack.log_dir}")
    if not wait:
        return code
    console.print("\nRunning. Press Ctrl-C to stop everything this command started.")
    try:
        dead = stack.supervise()
    except KeyboardInterrupt:
        console.print("\nstopping…")
        return code
    console.print(f"[red]stopped because {[dead]} exited[/red]")
    return 1


def run_stack(*, demo: bool, wait: bool, api_port: int, prefect_port: int) -> int:
    """Start everything, run the demo, wait for Ctrl-C; 0 when the demo job completed
    (2: a port the stack needs is taken, said before anything starts, or a setting or data
    folder it cannot use)."""
    settings = get_settings()
    external_prefect = os.environ.get("PREFECT_API_URL")
    try:
        require_free_port(api_port, "REST API", option="--api-port")
        if not external_prefect:
            require_free_port(prefect_port, "Prefect server", option="--prefect-port")
    except PortInUseError as exc:
        console.print(f"[red]{exc}[/red]")
        return 2
    try:
        with (
            stop_on_signals(),
            LocalStack(
                settings.data_dir,
                api_port=api_port,
                prefect_port=prefect_port,
                prefect_api_url=external_prefect,
            ) as stack,
        ):
            return _serve(stack, settings, demo=demo, wait=wait)
    except ConfigurationError as exc:
        # A setting or data folder the stack cannot use: the message says which and what to
        # do; everything started so far has been stopped by the stack.
        console.print(f"[red]{exc}[/red]")
        return 2
