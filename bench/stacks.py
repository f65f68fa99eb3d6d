"""The stacks bench scripts measure (cli.scratch stacks in `.data/bench/`): `perf_stack`, the
Prefect server and the engine on scratch databases of TEST_ADMIN_DATABASE_URL's server, where
scripts start the engine (`start_engine`) and raw Prefect baselines (`raw_deployment`) side
by side; `fault_stack`, embedded PostgreSQL and Prefect on SQLite, jobs on a process worker.
"""

from __future__ import annotations

import secrets
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx

from bench.report import BENCH_DATA, Option, Targets, admin_url, finish, machine_info, parse
from cli import scratch
from cli.services import PYTHON
from cli.stack import WARM_DEPLOYMENT, LocalStack
from engine.settings import PROJECT_ROOT

NOOP = "bench-noop"
#: A setup of a benchmark: run on the stack with the options, its result.
Setup = Callable[[LocalStack, Any], Any]
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


@contextmanager
def perf_stack(name: str, *, keep: bool = False) -> Iterator[LocalStack]:
    """Prefect and engine on scratch PostgreSQL databases, the 3-step no-op workflow."""
    if "prefect" in sys.modules and scratch.shared is None:
        # Prefect reads its settings once, at import: imported before the stack's environment
        # exists, its clients would talk to a temporary server of their own.
        raise RuntimeError("perf_stack() must start before prefect is imported")
    with scratch.server_stack(_root(name), PERF_ENV, admin_url(), keep=keep) as stack:
        install_noop_workflow(3)
        yield stack


def fault_stack(name: str, env: Mapping[str, str], *, keep: bool) -> Any:
    """Embedded PostgreSQL, Prefect on SQLite, run-workflow on the process pool, a process
    worker and the API, all answering. Maintenance is not deployed: scripts run it."""
    return scratch.embedded_stack(_root(name), env, PREFECT_SQLITE, keep=keep)


def _root(name: str) -> Path:
    return BENCH_DATA / f"{name}-{secrets.token_hex(4)}"


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


@contextmanager
def engine_running(stack: LocalStack, **options: Any) -> Iterator[str]:
    """`start_engine(stack, **options)`, its token; the warm worker and the API stopped after."""
    try:
        yield start_engine(stack, **options)
    finally:
        stack.stop("warm-worker")
        stack.stop("api")


@contextmanager
def engine_poster(
    stack: LocalStack, workflow: str, input_data: Any, *, limit: int, timeout: float
) -> Iterator[Callable[[], str]]:
    """The engine running with a warm worker of `limit` runs, and a function that starts a
    job of `workflow` with `input_data` through the API (`timeout` seconds); the job id."""
    body = {"workflow_id": workflow, "input_data": input_data}
    with engine_running(stack, limit=limit) as token:
        headers = {"Authorization": f"Bearer {token}"}
        client = httpx.Client(base_url=stack.api_url, headers=headers, timeout=timeout)
        with client:
            yield lambda: str(client.post("/workflows/start", json=body).json()["job_id"])


def setups_option(setups: Mapping[str, Setup]) -> Option:
    """--setups: which of `setups` run, all by default."""
    return ("--setups", ",".join(setups), "comma-separated subset")


def run_setups(name: str, args: Any, setups: Mapping[str, Setup]) -> tuple[Any, dict[str, Any]]:
    """The setups --setups names, in the order of `setups`, one after the other on one perf
    stack; (machine info, results by setup, `_` for `-`). A setup that returns None did not
    run (nothing to measure with these options)."""
    wanted = {s.strip() for s in args.setups.split(",")}
    with perf_stack(name, keep=args.keep) as stack:
        machine = machine_info()
        ran = {s.replace("-", "_"): go(stack, args) for s, go in setups.items() if s in wanted}
        return machine, {s: result for s, result in ran.items() if result is not None}


@dataclass(frozen=True)
class Benchmark:
    """A benchmark script's main, `main(argv)`: its `options` (and --setups, last unless they
    place it) parsed, the setups run on one perf stack (the folder `stack`, by default
    `name`), `show(args, results)` printing the tables and returning (targets, what the report
    holds beyond machine, settings, engine and baselines, whether every setup ran), the report
    `.data/bench/<name>.json` written. Settings are the options' and `method`."""

    name: str
    doc: str | None
    options: Sequence[Option]
    setups: Mapping[str, Setup]
    show: Callable[[Any, dict[str, Any]], tuple[Targets, dict[str, Any], bool]]
    method: Mapping[str, Any] = field(default_factory=dict)
    stack: str = ""

    def __call__(self, argv: list[str] | None = None) -> int:
        """Run the benchmark with these arguments (None: the command line's); 0 when every
        setup ran."""
        flags = {o[0] for o in self.options}
        setups = [] if "--setups" in flags else [setups_option(self.setups)]
        args = parse(self.doc, argv, *self.options, *setups)
        machine, results = run_setups(self.stack or self.name, args, self.setups)
        targets, extra, ran = self.show(args, results)
        settings, engine = {**args.settings, **self.method}, results.get("engine")
        baselines = {k: v for k, v in results.items() if k != "engine"}
        measured = {"machine": machine, "settings": settings, "engine": engine}
        measured |= {"baselines": baselines, **extra}
        finish(self.name, args, measured, targets)
        return 0 if ran else 1
