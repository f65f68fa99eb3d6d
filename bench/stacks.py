"""The stacks bench scripts measure: cli.stack.LocalStack in a scratch folder of `.data/bench/`,
everything stopped on exit and the folder removed unless `keep`.

- `perf_stack`: the Prefect server and the engine on scratch PostgreSQL databases (on the
  server of TEST_ADMIN_DATABASE_URL); scripts start the engine (`start_engine`) and raw
  Prefect baselines (`raw_deployment`) on it, in the same run.
- `fault_stack`: embedded PostgreSQL, Prefect on SQLite, run-workflow on the process pool, a
  process worker and the API (a job runs in a process of its own, to be killed).

Under `python -m bench`, a script asking for the stack already running gets it.
"""

from __future__ import annotations

import secrets
import shutil
import sqlite3
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, ExitStack, closing, contextmanager, nullcontext
from importlib.metadata import version
from typing import Any
from uuid import UUID

from bench.report import BENCH_DATA, admin_url, machine_info
from cli.services import PYTHON
from cli.stack import PROCESS_POOL, WARM_DEPLOYMENT, LocalStack
from engine.settings import PROJECT_ROOT

NOOP = "bench-noop"
LIMITS = "start={0}/minute;read={1}/minute;anon={0}/minute"
#: The benchmarks measure the engine, not the rate limiter refusing them; load_concurrent's
#: steps call a local endpoint.
PERF_ENV = {
    "RATE_LIMITS": LIMITS.format(1_000_000, 1_000_000),
    "PREFECT_DEPLOYMENT": WARM_DEPLOYMENT,
    "HTTP_ALLOWLIST": "127.0.0.1",
}
#: Crash detection and recovery in seconds, not minutes. The heartbeat window stays above the
#: time a flow-run process takes to start on a loaded 2-core machine: a run a worker took
#: does not beat until its process is up, and a shorter window resubmits healthy runs.
FAST_RECOVERY_ENV = {
    "JOB_HEARTBEAT_SECONDS": "0.5",
    "HEARTBEAT_WINDOW_SECONDS": "10",
    "RESUBMIT_BACKOFF_SECONDS": "0",
    "DISPATCH_GRACE_SECONDS": "1",
    "HTTP_ALLOWLIST": "127.0.0.1",
    "PREFECT_WORKER_QUERY_SECONDS": "1",
    "PREFECT_WORKER_PREFETCH_SECONDS": "1",
    "RATE_LIMITS": LIMITS.format(6000, 60000),
}
#: A migrated Prefect SQLite database: fault stacks start from a copy (migrating takes ~10 s).
PREFECT_SQLITE = BENCH_DATA / "cache" / f"prefect-{version('prefect')}.db"
Build = Callable[[], AbstractContextManager[LocalStack]]


#: Under `python -m bench`: the stack kept for the next script (by kind and settings, with
#: the services it had when it came up), stopped by `keeper` at the end. One per process:
#: Prefect keeps the settings it was imported with.
shared: dict[Any, tuple[LocalStack, frozenset[str]]] | None = None
keeper = ExitStack()


def _stack(key: Any, build: Build) -> AbstractContextManager[LocalStack]:
    if shared is None:
        return build()
    if key not in shared:
        if shared:
            raise RuntimeError("scripts run together must share one stack (same kind, settings)")
        stack = keeper.enter_context(build())
        shared[key] = (stack, frozenset(stack.services))
    return nullcontext(shared[key][0])


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
    """Prefect and engine on scratch PostgreSQL databases, the 3-step no-op workflow."""
    return _stack("perf", lambda: _perf(name, keep))


@contextmanager
def _fault(name: str, env: Mapping[str, str], keep: bool) -> Iterator[LocalStack]:
    with scratch_stack(name, env, keep=keep) as stack:
        database = stack.root / "prefect" / "prefect.db"
        database.parent.mkdir(parents=True)
        if PREFECT_SQLITE.exists():
            shutil.copyfile(PREFECT_SQLITE, database)
        stack.start_prefect()  # boots while the embedded server starts and migrates
        stack.start_database()
        stack.migrate()
        stack.wait_prefect(timeout=120)
        if not PREFECT_SQLITE.exists():
            PREFECT_SQLITE.parent.mkdir(parents=True, exist_ok=True)
            partial = PREFECT_SQLITE.with_suffix(".partial")
            with closing(sqlite3.connect(database)) as db, closing(sqlite3.connect(partial)) as to:
                db.backup(to)
            partial.replace(PREFECT_SQLITE)
        stack.start_engine(["run-workflow"], pools={PROCESS_POOL: "process"})
        yield stack


def fault_stack(name: str, env: Mapping[str, str], *, keep: bool) -> Any:
    """Embedded PostgreSQL, Prefect on SQLite, run-workflow on the process pool, a process
    worker and the API, all answering. Maintenance is not deployed: scripts run it."""
    return _stack(("fault", tuple(sorted(env.items()))), lambda: _fault(name, env, keep))


def workflow_id(steps: int) -> str:
    """Id of the bench workflow of `steps` sequential no-op steps."""
    return f"bench_noop_{steps}"


def install_noop_workflow(steps: int) -> None:
    """A workflow of `steps` sequential no-op (json_transform) steps."""
    from engine.db.connection import shared_store

    store = shared_store()
    config = {"template": {"value.$": "$.input"}}
    store.upsert_transformer(
        NOOP, "json_transform", "bench: no-op", config, "execute-json-transform"
    )
    inputs = ["$.input.x", *(f"$.steps.s{i}.value.x" for i in range(1, steps))]
    chain = [
        {"id": f"s{i}", "transformer": NOOP, "input": {"x.$": x}} for i, x in enumerate(inputs, 1)
    ]
    definition = {"steps": chain, "output": {"x.$": f"$.steps.s{steps}.value.x"}}
    store.upsert_workflow(workflow_id(steps), f"bench: {steps} no-op steps", definition)


@contextmanager
def raw_deployment(stack: LocalStack, kind: str, limit: int | None) -> Iterator[UUID]:
    """A new pool of worker type `kind` ("process" or "supaflow-warm"), the raw no-op flow
    (bench/raw_flow.py, none of the engine) deployed on it and, unless `limit` is None, a
    worker of `limit` runs polling every 0.5 s (the warm one without LISTEN: nothing of the
    engine wakes it), stopped at the end; the deployment id. On a process pool the deployment
    sets `job_variables.command`: a run starts one Python, not two."""
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
            entrypoint="bench/raw_flow.py:raw_noop_flow",
            path=str(PROJECT_ROOT),
            work_pool_name=pool,
            work_queue_name="default",
            parameter_openapi_schema=parameter_schema(raw_noop_flow).model_dump(),
            pull_steps=[pull],
            job_variables={"command": f"{PYTHON} -m prefect.engine"} if process else None,
        )
    worker = "process-worker" if process else "raw-warm-worker"
    if limit is not None and process:
        stack.start_process_worker(pool, limit=limit, query_seconds=0.5)
    elif limit is not None:
        stack.start_warm_worker(pool, limit=limit, query_seconds=0.5, listen=False, name=worker)
    try:
        yield deployment
    finally:
        stack.stop(worker)


def deployment_id(stack: LocalStack, full_name: str) -> UUID:
    """Id of the deployment `flow/deployment`."""
    from prefect.client.orchestration import SyncPrefectClient

    with SyncPrefectClient(stack.prefect_api_url) as client:
        return client.read_deployment_by_name(full_name).id


def start_engine(stack: LocalStack, *, limit: int | None = 10, **options: Any) -> str:
    """The engine, answering: run-workflow-warm from prefect.yaml (once per stack), a warm
    worker of `limit` runs (None: none), the API (`api_env`: its own settings); a token."""
    stack.start_engine(["run-workflow-warm"], process_worker=False, warm_limit=limit, **options)
    return stack.mint_token("bench@example.com")


def run_setups(name: str, args: Any, setups: Mapping[str, Callable[..., Any]]) -> tuple[Any, Any]:
    """The setups --setups names, in the order of `setups`, one after the other on one perf
    stack; (machine info, results by setup, `_` for `-`)."""
    wanted = {s.strip() for s in args.setups.split(",")}
    with perf_stack(name, keep=args.keep) as stack:
        machine = machine_info()
        return machine, {
            s.replace("-", "_"): go(stack, args) for s, go in setups.items() if s in wanted
        }
