"""Scratch stacks: the local stack in a throwaway folder, as the benchmarks and fault scripts
use it (isolated from the caller's environment, see `LocalStack`).

- `server_stack`: the Prefect server and the engine on scratch databases of a PostgreSQL
  server (created here, dropped at the end); workers and the API are the caller's to start.
- `embedded_stack`: what `supaflow up` runs: the embedded PostgreSQL, the Prefect server on
  its database `prefect`, jobs on a warm worker (run-workflow-warm) or, for `worker="process"`,
  on Prefect's process worker (run-workflow), and the API, all answering.

Fault handles besides a part's own stop and start: `start_maintenance`, `run_maintenance`,
`kill_service`, `kill_flow_run`.
Everything is stopped on exit and the folder removed unless `keep`. While `shared` is a dict
(set by a runner of several consumers in one process), a consumer asking for a stack of the
kind and settings already running gets that one; `keeper` stops it at the end.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
from pathlib import Path
from typing import Any

from cli.services import PYTHON
from cli.stack import WARM_DEPLOYMENT, LocalStack
from cli.work_pools import PROCESS_POOL
from engine.settings import PROJECT_ROOT

#: Stacks kept for the next consumer (by kind and settings), with the services each had
#: when it came up. One per process: Prefect keeps the settings it was imported with.
shared: dict[Any, tuple[LocalStack, frozenset[str]]] | None = None
keeper = ExitStack()


def _reuse(key: Any, build: Callable[[], AbstractContextManager[LocalStack]]) -> Any:
    if shared is None:
        return build()
    if key not in shared:
        if shared:
            raise RuntimeError("consumers in one process must share one stack (kind, settings)")
        stack = keeper.enter_context(build())
        shared[key] = (stack, frozenset(stack.services))
    return nullcontext(shared[key][0])


def end_of_consumer() -> None:
    """Stop what the last consumer started on the shared stacks."""
    for stack, base in (shared or {}).values():
        for name in set(stack.services) - base:
            stack.stop(name)


@contextmanager
def scratch_stack(root: Path, env: Mapping[str, str], *, keep: bool) -> Iterator[LocalStack]:
    """An isolated LocalStack in `root`, nothing started yet; `root` removed unless `keep`."""
    try:
        with LocalStack(root, isolated=True, env=env) as stack:
            yield stack
    finally:
        if keep:
            print(f"kept {root}", flush=True)
        else:
            shutil.rmtree(root, ignore_errors=True)


@contextmanager
def _server(root: Path, env: Mapping[str, str], admin_url: str, keep: bool) -> Iterator[LocalStack]:
    with scratch_stack(root, env, keep=keep) as stack:
        stack.start_prefect(admin_url=admin_url)  # boots while the engine database migrates
        stack.start_database(admin_url=admin_url)
        stack.migrate()
        stack.wait_prefect(timeout=180)
        yield stack


def server_stack(root: Path, env: Mapping[str, str], admin_url: str, *, keep: bool) -> Any:
    """Prefect server and engine on scratch databases of the server of `admin_url`."""
    return _reuse(
        ("server", tuple(sorted(env.items()))), lambda: _server(root, env, admin_url, keep)
    )


#: The worker kinds an embedded stack runs jobs on.
WORKERS = ("warm", "process")


@contextmanager
def _embedded(
    root: Path, env: Mapping[str, str], worker: str, warm_limit: int, keep: bool
) -> Iterator[LocalStack]:
    if worker not in WORKERS:
        raise ValueError(f"worker must be one of {WORKERS}, not {worker!r}")
    warm = worker == "warm"
    # As `supaflow up` sets it: the API and maintenance start runs of the warm deployment.
    deployment = {"PREFECT_DEPLOYMENT": WARM_DEPLOYMENT} if warm else {}
    with scratch_stack(root, {**env, **deployment}, keep=keep) as stack:
        stack.start_database()
        # Boots (its own migrations on a new database) while the engine's migrate.
        stack.start_prefect(database_url=stack.prefect_database())
        stack.migrate()
        stack.wait_prefect(timeout=180)
        if warm:
            stack.start_engine(["run-workflow-warm"], process_worker=False, warm_limit=warm_limit)
        else:
            stack.start_engine(["run-workflow"], pools={PROCESS_POOL: "process"})
        yield stack


def embedded_stack(
    root: Path, env: Mapping[str, str], *, worker: str = "warm", warm_limit: int = 10, keep: bool
) -> Any:
    """What `supaflow up` runs (without maintenance's schedule: the caller runs its passes):
    embedded PostgreSQL, Prefect on its database `prefect`, jobs on a warm worker of
    `warm_limit` runs (`worker="process"`: on the process worker), and the API."""
    key = ("embedded", worker, warm_limit, tuple(sorted(env.items())))
    return _reuse(key, lambda: _embedded(root, env, worker, warm_limit, keep))


def start_maintenance(stack: LocalStack) -> subprocess.Popen[bytes]:
    """One pass of the maintenance flow in a new process, as the schedule runs it (logs in
    logs/maintenance.log), started; the caller waits for it (or kills it)."""
    code = "from flows.maintenance import maintenance; maintenance()"
    with (stack.log_dir / "maintenance.log").open("ab") as log:
        return subprocess.Popen(
            [PYTHON, "-c", code], env=stack.env, cwd=PROJECT_ROOT, stdout=log, stderr=log
        )


def run_maintenance(stack: LocalStack) -> int:
    """One pass of the maintenance flow (`start_maintenance`), waited for; its exit status (a
    pass fails while Prefect is down, for one)."""
    return start_maintenance(stack).wait()


def kill_service(stack: LocalStack, name: str, *, group: bool = False) -> int:
    """SIGKILL the service `name` (with `group`, its whole process group: the server and
    every process it started, as a crash of all of them) and wait until it is gone; its pid.
    The stack still lists it, so a supervisor sees it exit and restarts it."""
    service = stack.services[name]
    if group:
        os.killpg(service.pid, signal.SIGKILL)
    else:
        os.kill(service.pid, signal.SIGKILL)
    service.proc.wait(timeout=30)
    return service.pid


def kill_flow_run(stack: LocalStack, flow_run_id: str, timeout: float = 30) -> int:
    """SIGKILL the process the process worker runs `flow_run_id` in (waits for it to
    appear); its pid."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid = stack.flow_run_process(flow_run_id)
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
            return pid
        time.sleep(0.1)
    raise RuntimeError(f"no process runs flow run {flow_run_id}")
