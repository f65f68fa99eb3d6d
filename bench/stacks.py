"""The stack the benchmarks measure on (`perf_stack`: the Prefect server and the engine on
scratch databases of TEST_ADMIN_DATABASE_URL's server), the engine (`engine_running`) and raw
Prefect baselines (`raw_deployment`) started side by side on it, and `Benchmark`, every
benchmark's main."""

from __future__ import annotations

import secrets
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx

from bench import report as out
from cli import scratch
from cli.services import PYTHON
from cli.stack import WARM_DEPLOYMENT, LocalStack
from cli.up import start_job
from engine.settings import PROJECT_ROOT

NOOP = "bench-noop"
#: A setup of a benchmark: run on the stack with the options, its result.
Setup = Callable[[LocalStack, Any], Any]
#: A POST /workflows/start of `post_jobs`: token, Idempotency-Key (or None), workflow, input.
Request = tuple[str, str | None, str, Any]
LIMITS = "start={0}/minute;read={1}/minute;anon={0}/minute"
#: The benchmarks measure the engine, not the rate limiter refusing them; load_concurrent's
#: steps call a local endpoint.
PERF_ENV = {
    "RATE_LIMITS": LIMITS.format(1_000_000, 1_000_000),
    "PREFECT_DEPLOYMENT": WARM_DEPLOYMENT,
    "HTTP_ALLOWLIST": "127.0.0.1",
}


def bench_root(name: str) -> Path:
    """A new scratch folder `.data/bench/<name>-<random>`."""
    return out.BENCH_DATA / f"{name}-{secrets.token_hex(4)}"


@contextmanager
def perf_stack(name: str, *, keep: bool = False) -> Iterator[LocalStack]:
    """Prefect and engine on scratch PostgreSQL databases, the 3-step no-op workflow."""
    if "prefect" in sys.modules and scratch.shared is None:
        # Prefect reads its settings once, at import: imported before the stack's environment
        # exists, its clients would talk to a temporary server of their own.
        raise RuntimeError("perf_stack() must start before prefect is imported")
    with scratch.server_stack(bench_root(name), PERF_ENV, out.admin_url(), keep=keep) as stack:
        install_noop_workflow(3)
        yield stack


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


@contextmanager
def engine_running(stack: LocalStack, *, limit: int | None = 10, **options: Any) -> Iterator[str]:
    """The engine, answering: run-workflow-warm from prefect.yaml (once per stack), a warm
    worker of `limit` runs (None: none), the API (`api_env`: its own settings); a token. The
    warm worker and the API are stopped after."""
    stack.start_engine(["run-workflow-warm"], process_worker=False, warm_limit=limit, **options)
    try:
        yield stack.mint_token("bench@example.com")
    finally:
        stack.stop("warm-worker")
        stack.stop("api")


@contextmanager
def starter(stack: LocalStack, kind: str, steps: int, data: Any, limit: int) -> Iterator[Any]:
    """A function that starts one run of the `steps`-step no-op with input `data` and returns
    its id: with `kind` "engine" a job through the API, run by a warm worker of `limit` runs;
    else a raw `run_deployment(timeout=0)` of the raw flow on a worker of that type."""
    if kind == "engine":
        with engine_running(stack, limit=limit) as token:
            yield lambda: start_job(stack.api_url, token, workflow_id(steps), data, timeout=60)
    else:
        with raw_deployment(stack, kind, limit) as deployment:
            yield lambda: out.run_raw(deployment, {"x": data, "steps": steps})


def post_jobs(stack: LocalStack, requests: Sequence[Request], concurrency: int) -> list[Any]:
    """POST /workflows/start for each (token, Idempotency-Key or None, workflow, input),
    `concurrency` in flight; per request its `key`, `status` (a transport error by its name)
    and `job_id`. Requests that made no job are counted and the first printed."""
    limits = httpx.Limits(max_connections=concurrency)

    async def one(client: httpx.AsyncClient, n: int) -> dict[str, Any]:
        token, key, workflow, data = requests[n]
        headers = {"Authorization": f"Bearer {token}", **({"Idempotency-Key": key} if key else {})}
        body = {"workflow_id": workflow, "input_data": data}
        try:
            answer = await client.post("/workflows/start", headers=headers, json=body)
        except httpx.HTTPError as exc:
            return {"key": key, "status": type(exc).__name__}
        return {"key": key, "status": answer.status_code, "job_id": answer.json().get("job_id")}

    client = lambda: httpx.AsyncClient(base_url=stack.api_url, timeout=60, limits=limits)  # noqa: E731
    answers = [a for a in out.burst(client, len(requests), concurrency, one) if a is not None]
    failed = [a for a in answers if not a.get("job_id")]
    if failed:
        print(f"  {len(failed)} submissions failed, first: {failed[0]['status']}", flush=True)
    return answers


def run_setups(stack: Any, args: Any, run: Mapping[str, Setup] | Setup) -> dict[str, Any]:
    """`run`'s results: one function's, or those of the setups --setups names, in the order of
    `run`, one after the other, by setup (`_` for `-`; a setup returning None did not run)."""
    if not isinstance(run, Mapping):
        return dict(run(stack, args))
    wanted = {s.strip() for s in args.setups.split(",")}
    ran = {s.replace("-", "_"): go(stack, args) for s, go in run.items() if s in wanted}
    return {s: result for s, result in ran.items() if result is not None}


@dataclass(frozen=True)
class Benchmark:
    """A benchmark script's main, `main(argv)`: its `options` (and --setups where `run` is a
    mapping) parsed, `run` on one perf stack (`stack=False`: on none), `show(args, results)`
    printing the tables and returning (targets, the report's extra keys and settings, whether
    everything ran), the report `.data/bench/<name>.json` written: machine, settings (the
    options' and `method`), the engine's results and the others as baselines. Exit status 0
    when everything ran."""

    name: str
    doc: str | None
    options: Sequence[out.Option]
    run: Mapping[str, Setup] | Setup
    show: Callable[[Any, dict[str, Any]], tuple[out.Targets, dict[str, Any], bool]]
    method: Mapping[str, Any] = field(default_factory=dict)
    stack: bool = True

    def __call__(self, argv: list[str] | None = None) -> int:
        """Run the benchmark with these arguments (None: the command line's)."""
        setups = ",".join(self.run) if isinstance(self.run, Mapping) else None
        pick = [("--setups", setups, "comma-separated subset")] if setups else []
        args = out.parse(self.doc, argv, *self.options, *pick)
        folder = self.name.replace("_", "-")
        with perf_stack(folder, keep=args.keep) if self.stack else nullcontext() as stack:
            machine, results = out.machine_info(), run_setups(stack, args, self.run)
        targets, extra, ran = self.show(args, results)
        where = {"prefect_server_database": "PostgreSQL (scratch database)"} if self.stack else {}
        settings = {**args.settings, **self.method, **where, **extra.pop("settings", {})}
        baselines = {k: v for k, v in results.items() if k != "engine"}
        measured = {"machine": machine, "settings": settings, "engine": results.get("engine")}
        out.finish(self.name, args, {**measured, "baselines": baselines, **extra}, targets)
        return 0 if ran else 1
