"""The stacks bench scripts measure: cli.stack.LocalStack in a scratch folder of `.data/bench/`.

- `perf_stack`: the Prefect server on a scratch PostgreSQL database and the engine on another
  (both on the server of TEST_ADMIN_DATABASE_URL, dropped at the end); each script starts
  the engine (`start_engine`: run-workflow-warm from prefect.yaml, warm worker, API) and the
  raw Prefect baselines (`deploy_raw`) it measures, on the same server, in the same run.
- `fault_stack`: the embedded PostgreSQL, the Prefect server on SQLite, run-workflow from
  prefect.yaml, a process worker and the API (a job runs in a process of its own, to kill).

Every process is stopped on exit and the folder removed unless `keep`. Under `sharing()`
(`python -m bench`), scripts asking for the same stack get the one already running.
"""

from __future__ import annotations

import secrets
import shutil
import sqlite3
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, ExitStack, closing, contextmanager
from importlib.metadata import version
from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import dict_row

from bench.report import BENCH_DATA, admin_url
from cli.services import PYTHON
from cli.stack import PROCESS_POOL, WARM_DEPLOYMENT, LocalStack
from engine.settings import PROJECT_ROOT

NOOP_TRANSFORMER = "bench-noop"
RAW_ENTRYPOINT = "bench/raw_flow.py:raw_noop_flow"
#: The benchmarks measure the engine, not the rate limiter refusing them.
PERF_ENV = {
    "RATE_LIMITS": "start=1000000/minute;read=1000000/minute;anon=1000000/minute",
    "PREFECT_DEPLOYMENT": WARM_DEPLOYMENT,
    "HTTP_ALLOWLIST": "127.0.0.1",  # load_concurrent's steps call a local endpoint
}
#: Settings that make crash detection and recovery take seconds instead of minutes. The
#: heartbeat window stays above the time a flow-run process takes to start on a loaded
#: 2-core machine (several seconds for a burst): a run a worker took (PENDING) does not beat
#: until its process is up, and a shorter window resubmits healthy runs.
FAST_RECOVERY_ENV = {
    "JOB_HEARTBEAT_SECONDS": "0.5",
    "HEARTBEAT_WINDOW_SECONDS": "10",
    "RESUBMIT_BACKOFF_SECONDS": "0",
    "DISPATCH_GRACE_SECONDS": "1",
    "HTTP_ALLOWLIST": "127.0.0.1",
    "PREFECT_WORKER_QUERY_SECONDS": "1",
    "PREFECT_WORKER_PREFETCH_SECONDS": "1",
    "RATE_LIMITS": "start=6000/minute;read=60000/minute;anon=6000/minute",
}
#: A migrated Prefect SQLite database: fault stacks start from a copy (migrating takes ~10 s).
PREFECT_SQLITE = BENCH_DATA / "cache" / f"prefect-{version('prefect')}.db"


class _Shared:
    """The stack kept for the next script under `sharing()` (one kind per process: Prefect
    keeps the settings it was imported with)."""

    on = False
    key: Any = None
    stack: LocalStack | None = None
    base: frozenset[str] = frozenset()
    exits = ExitStack()


def end_of_script() -> None:
    """Under `sharing()`, between two scripts: stop the services the last one started."""
    stack = _Shared.stack
    for name in set(stack.services) - _Shared.base if stack else ():
        stack.stop(name)


@contextmanager
def sharing() -> Iterator[None]:
    """Within the block, scripts that ask for the same stack share one; stopped at its end."""
    _Shared.on = True
    try:
        yield
    finally:
        _Shared.on, _Shared.key, _Shared.stack = False, None, None
        _Shared.exits.close()


@contextmanager
def _stack(
    key: Any, build: Callable[[], AbstractContextManager[LocalStack]]
) -> Iterator[LocalStack]:
    if not _Shared.on:
        with build() as stack:
            yield stack
        return
    if _Shared.stack is None:
        _Shared.stack, _Shared.key = _Shared.exits.enter_context(build()), key
        _Shared.base = frozenset(_Shared.stack.services)
    elif _Shared.key != key:
        raise RuntimeError("scripts run together must share one stack (same kind, same settings)")
    yield _Shared.stack


@contextmanager
def scratch_stack(name: str, env: Mapping[str, str], *, keep: bool) -> Iterator[LocalStack]:
    """An isolated LocalStack in `.data/bench/<name>-<random>/`, nothing started yet."""
    root = BENCH_DATA / f"{name}-{secrets.token_hex(4)}"
    try:
        with LocalStack(root, isolated=True, env=env) as stack:
            yield stack
    finally:
        if keep:
            print(f"kept {root}", flush=True)
        else:
            shutil.rmtree(root, ignore_errors=True)


@contextmanager
def _perf(name: str, keep: bool) -> Iterator[LocalStack]:
    if "prefect" in sys.modules:
        # Prefect reads its settings once, at import: imported before the stack's environment
        # exists, its clients would talk to a temporary server of their own.
        raise RuntimeError("perf_stack() must start before prefect is imported")
    with scratch_stack(name, PERF_ENV, keep=keep) as stack:
        stack.start_prefect(admin_url=admin_url())  # boots while the engine database migrates
        stack.start_database(admin_url=admin_url())
        stack.migrate()
        stack.wait_prefect(timeout=180)
        install_noop_workflow(3)
        yield stack


def perf_stack(name: str, *, keep: bool = False) -> AbstractContextManager[LocalStack]:
    """Prefect server and engine on scratch PostgreSQL databases, the 3-step no-op workflow;
    no API, worker or deployment yet."""
    return _stack("perf", lambda: _perf(name, keep))


@contextmanager
def _fault(name: str, env: Mapping[str, str], keep: bool) -> Iterator[LocalStack]:
    with scratch_stack(name, env, keep=keep) as stack:
        database = stack.root / "prefect" / "prefect.db"
        if PREFECT_SQLITE.exists():
            database.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(PREFECT_SQLITE, database)
        stack.start_prefect()  # boots while the embedded server starts and migrates
        stack.start_database()
        stack.migrate()
        stack.wait_prefect(timeout=120)
        if not PREFECT_SQLITE.exists():
            PREFECT_SQLITE.parent.mkdir(parents=True, exist_ok=True)
            partial = PREFECT_SQLITE.with_suffix(".partial")
            with (
                closing(sqlite3.connect(database)) as src,
                closing(sqlite3.connect(partial)) as out,
            ):
                src.backup(out)
            partial.replace(PREFECT_SQLITE)
        stack.start_engine(["run-workflow"], pools={PROCESS_POOL: "process"})
        yield stack


def fault_stack(
    name: str, env: Mapping[str, str], *, keep: bool
) -> AbstractContextManager[LocalStack]:
    """Embedded PostgreSQL, Prefect on SQLite, run-workflow on the process pool, a process
    worker and the API, all answering. Maintenance is not deployed: scripts run it."""
    return _stack(("fault", sorted(env.items())), lambda: _fault(name, env, keep))


def connect(url: str) -> psycopg.Connection[dict[str, Any]]:
    """A new autocommit connection with dict rows."""
    return psycopg.connect(url, autocommit=True, row_factory=dict_row)


def workflow_id(steps: int) -> str:
    """Id of the bench workflow of `steps` sequential no-op steps."""
    return f"bench_noop_{steps}"


def install_noop_workflow(steps: int) -> str:
    """A workflow of `steps` sequential no-op (json_transform) steps; its id."""
    from engine.db.connection import shared_store

    store = shared_store()
    config = {"template": {"value.$": "$.input"}}
    store.upsert_transformer(
        NOOP_TRANSFORMER,
        "json_transform",
        "bench: returns its input",
        config,
        "execute-json-transform",
    )
    chain = [{"id": "s1", "transformer": NOOP_TRANSFORMER, "input": {"x.$": "$.input.x"}}]
    chain += [
        {
            "id": f"s{i}",
            "transformer": NOOP_TRANSFORMER,
            "input": {"x.$": f"$.steps.s{i - 1}.value.x"},
        }
        for i in range(2, steps + 1)
    ]
    definition = {"steps": chain, "output": {"x.$": f"$.steps.s{steps}.value.x"}}
    store.upsert_workflow(workflow_id(steps), f"bench: {steps} no-op steps", definition)
    return workflow_id(steps)


def deploy_raw(stack: LocalStack, kind: str) -> tuple[UUID, str]:
    """A new pool of worker type `kind` ("process" or "supaflow-warm") and the raw no-op flow
    deployed on it (none of the engine runs for it); (deployment id, pool). On a process pool
    the deployment sets `job_variables.command`, so a run starts one Python, not two."""
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.utilities.callables import parameter_schema

    from bench.raw_flow import raw_noop_flow

    process = kind == "process"
    pool = f"bench-{'process' if process else 'rawwarm'}-{secrets.token_hex(3)}"
    stack.create_pools({pool: kind})
    pull = {"prefect.deployments.steps.set_working_directory": {"directory": str(PROJECT_ROOT)}}
    with SyncPrefectClient(stack.prefect_api_url) as client:
        deployment = client.create_deployment(
            flow_id=client.create_flow_from_name(raw_noop_flow.name),
            name="raw-noop-process" if process else "raw-noop-warm",
            entrypoint=RAW_ENTRYPOINT,
            path=str(PROJECT_ROOT),
            work_pool_name=pool,
            work_queue_name="default",
            parameter_openapi_schema=parameter_schema(raw_noop_flow).model_dump(),
            pull_steps=[pull],
            job_variables={"command": f"{PYTHON} -m prefect.engine"} if process else None,
        )
    return deployment, pool


def deployment_id(stack: LocalStack, full_name: str) -> UUID:
    """Id of the deployment `flow/deployment`."""
    from prefect.client.orchestration import SyncPrefectClient

    with SyncPrefectClient(stack.prefect_api_url) as client:
        return client.read_deployment_by_name(full_name).id


def start_engine(stack: LocalStack, *, limit: int | None = 10, **options: Any) -> str:
    """The engine, answering: run-workflow-warm from prefect.yaml (once per stack), a warm
    worker of `limit` runs (None: no worker) and the API (`api_env`: its own settings); a
    local token for bench@example.com."""
    stack.start_engine(["run-workflow-warm"], process_worker=False, warm_limit=limit, **options)
    return stack.mint_token("bench@example.com")


def start_raw_worker(stack: LocalStack, kind: str, pool: str, limit: int) -> str:
    """The worker of a raw baseline's pool, polling every 0.5 s (the warm one without LISTEN:
    nothing of the engine wakes it); its service name."""
    if kind == "process":
        return stack.start_process_worker(pool, limit=limit, query_seconds=0.5).name
    name = "raw-warm-worker"
    stack.start_warm_worker(pool, limit=limit, query_seconds=0.5, listen=False, name=name)
    return name


Setup = Callable[[LocalStack, Any], dict[str, Any]]


def run_setups(
    name: str, args: Any, setups: Mapping[str, Setup]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The setups chosen by --setups, in the order of `setups`, one after the other on one
    perf stack; (machine info, results by setup with `_` for `-`)."""
    from bench.report import machine_info
    from bench.report import setups as chosen

    wanted = chosen(args.setups)
    with perf_stack(name, keep=args.keep) as stack:
        machine = machine_info()
        results = {
            s.replace("-", "_"): run(stack, args) for s, run in setups.items() if s in wanted
        }
    return machine, results
