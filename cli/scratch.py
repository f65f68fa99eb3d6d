"""Scratch stacks: the local stack in a throwaway folder, as the benchmarks and fault scripts
use it (isolated from the caller's environment, see `LocalStack`).

- `server_stack`: the Prefect server and the engine on scratch databases of a PostgreSQL
  server (created here, dropped at the end); workers and the API are the caller's to start.
- `embedded_stack`: the embedded PostgreSQL, the Prefect server on SQLite (started from a
  migrated copy when one is cached: migrating takes about 10 s), run-workflow of prefect.yaml
  on the process pool, a process worker and the API, all answering.

Fault handles besides a part's own stop and start: `run_maintenance`, `kill_flow_run`.
Everything is stopped on exit and the folder removed unless `keep`. While `shared` is a dict
(set by a runner of several consumers in one process), a consumer asking for a stack of the
kind and settings already running gets that one; `keeper` stops it at the end.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, ExitStack, closing, contextmanager, nullcontext
from pathlib import Path
from typing import Any

from cli.services import PYTHON
from cli.stack import LocalStack
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


@contextmanager
def _embedded(root: Path, env: Mapping[str, str], cache: Path, keep: bool) -> Iterator[LocalStack]:
    with scratch_stack(root, env, keep=keep) as stack:
        database = root / "prefect" / "prefect.db"
        database.parent.mkdir(parents=True)
        if cache.exists():
            shutil.copyfile(cache, database)
        stack.start_prefect()  # boots while the embedded server starts and migrates
        stack.start_database()
        stack.migrate()
        stack.wait_prefect(timeout=120)
        if not cache.exists():
            cache.parent.mkdir(parents=True, exist_ok=True)
            partial = cache.with_suffix(".partial")
            with closing(sqlite3.connect(database)) as db, closing(sqlite3.connect(partial)) as to:
                db.backup(to)
            partial.replace(cache)
        stack.start_engine(["run-workflow"], pools={PROCESS_POOL: "process"})
        yield stack


def embedded_stack(root: Path, env: Mapping[str, str], cache: Path, *, keep: bool) -> Any:
    """Embedded PostgreSQL, Prefect on SQLite (a migrated copy cached at `cache`),
    run-workflow on the process pool, a process worker and the API, all answering."""
    return _reuse(
        ("embedded", tuple(sorted(env.items()))), lambda: _embedded(root, env, cache, keep)
    )


def run_maintenance(stack: LocalStack) -> int:
    """One pass of the maintenance flow in a new process, as the schedule runs it (logs in
    logs/maintenance.log); its exit status (a pass fails while Prefect is down, for one)."""
    code = "from flows.maintenance import maintenance; maintenance()"
    with (stack.log_dir / "maintenance.log").open("ab") as log:
        done = subprocess.run(
            [PYTHON, "-c", code],
            env=stack.env,
            cwd=PROJECT_ROOT,
            stdout=log,
            stderr=log,
            check=False,
        )
    return done.returncode


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
