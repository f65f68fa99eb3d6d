"""Throughput: post a burst of 3-step no-op jobs at once and time until all have drained.

    .venv/bin/python bench/throughput.py                      # 1,000 jobs (engine, raw-warm)
    .venv/bin/python bench/throughput.py --n 30 --process-n 10   # the CI size

Setups (same Prefect server on PostgreSQL, same machine, one after the other):
- engine: N x POST /workflows/start (50 in flight) to the real API; the warm worker
  (limit 10) runs them;
- raw-warm: N x raw `run_deployment(timeout=0)` of the 3-task no-op flow, run by a warm
  worker (limit 10, polling 0.5 s) with none of the engine;
- raw-process: `--process-n` x the same on Prefect's process worker (limit 4, query 0.5 s,
  `job_variables.command` set). A process per run costs about 2 CPU-seconds, so its rate is
  steady from a few dozen runs on; the default is 200 to keep the run under ten minutes.

jobs/s = finished / (last completion - first submission), completion times from the job rows
(`completed_at`) and the flow_run rows (`end_time`). CPU-seconds per component are measured
over each burst, to show where the time goes. Target: engine >= 20 jobs/s.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID

import httpx
from common import (
    BenchStack,
    check,
    common_arguments,
    cpu_delta,
    cpu_snapshot,
    machine_info,
    print_table,
    print_targets,
    workflow_id,
    write_report,
)


async def _burst(n: int, concurrency: int, one: Callable[[int], Awaitable[str]]) -> list[str]:
    gate = asyncio.Semaphore(concurrency)
    errors: list[str] = []

    async def guarded(i: int) -> str | None:
        async with gate:
            try:
                return await one(i)
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
                return None

    ids = await asyncio.gather(*(guarded(i) for i in range(n)))
    if errors:
        print(f"  {len(errors)} submissions failed, first: {errors[0]}", flush=True)
    return [i for i in ids if i is not None]


def engine_burst(api_url: str, token: str, n: int, concurrency: int) -> list[str]:
    """POST n jobs through the API, `concurrency` in flight; the job ids."""

    async def run() -> list[str]:
        async with httpx.AsyncClient(
            base_url=api_url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=60,
            limits=httpx.Limits(max_connections=concurrency),
        ) as client:

            async def one(i: int) -> str:
                response = await client.post(
                    "/workflows/start",
                    json={"workflow_id": workflow_id(3), "input_data": {"x": i}},
                )
                response.raise_for_status()
                return str(response.json()["job_id"])

            return await _burst(n, concurrency, one)

    return asyncio.run(run())


def raw_burst(deployment: UUID, n: int, concurrency: int) -> list[str]:
    """n raw `run_deployment(timeout=0)` calls, `concurrency` at once; the flow run ids."""
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    async def run() -> list[str]:
        async with get_client() as client:

            async def one(i: int) -> str:
                flow_run = await run_deployment(  # type: ignore[misc]
                    deployment,
                    client=client,
                    parameters={"x": {"x": i}, "steps": 3},
                    timeout=0,
                    as_subflow=False,
                )
                return str(flow_run.id)

            return await _burst(n, concurrency, one)

    return asyncio.run(run())


def drain(
    stack: BenchStack,
    label: str,
    n: int,
    submit: Callable[[], list[str]],
    outcomes: Callable[[list[str]], dict[str, Any]],
    finished_key: str,
    failed_keys: tuple[str, ...],
    timeout: float,
) -> dict[str, Any]:
    """Submit the burst, poll every 0.5 s until every run is final (or `timeout`), and
    return the counts, the rates and the CPU each component used meanwhile."""
    cpu_before = cpu_snapshot(stack)
    wall0 = time.time()
    t0 = time.monotonic()
    ids = submit()
    submit_seconds = time.monotonic() - t0
    print(f"{label}: {len(ids)}/{n} submitted in {submit_seconds:.1f} s", flush=True)
    deadline = t0 + timeout
    last_report = 0.0
    state: dict[str, Any] = {"counts": {}, "last_done": None}
    while time.monotonic() < deadline:
        state = outcomes(ids)
        final = state["counts"].get(finished_key, 0) + sum(
            state["counts"].get(k, 0) for k in failed_keys
        )
        if final >= len(ids):
            break
        if time.monotonic() - last_report > 15:
            print(f"  {label}: {final}/{len(ids)} final after {time.monotonic() - t0:.0f} s")
            last_report = time.monotonic()
        time.sleep(0.5)
    elapsed_wall = time.monotonic() - t0
    cpu = cpu_delta(cpu_before, cpu_snapshot(stack))
    finished = state["counts"].get(finished_key, 0)
    failed = sum(state["counts"].get(k, 0) for k in failed_keys)
    span = (state["last_done"] - wall0) if state["last_done"] else None
    rate = round(finished / span, 3) if span else None
    print(f"{label}: {finished} finished, {failed} failed, {rate} jobs/s", flush=True)
    return {
        "submitted": len(ids),
        "requested": n,
        "finished": finished,
        "failed": failed,
        "unfinished": len(ids) - finished - failed,
        "submit_seconds": round(submit_seconds, 2),
        "submit_rate_per_s": round(len(ids) / submit_seconds, 2) if submit_seconds else None,
        "drain_seconds": round(span, 2) if span else None,
        "jobs_per_second": rate,
        "waited_seconds": round(elapsed_wall, 1),
        "cpu_seconds": cpu,
        "cpu_seconds_per_job": {
            k: round(v / finished, 3) for k, v in cpu.items() if finished and v > 0
        },
        "counts": state["counts"],
    }


def main(argv: list[str] | None = None) -> int:
    """Run each setup's burst, print the table and the CPU split, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--n", type=int, default=1000, help="jobs per burst (default 1000)")
    parser.add_argument(
        "--process-n", type=int, default=200, help="burst on the process worker (default 200)"
    )
    parser.add_argument("--concurrency", type=int, default=50, help="submissions in flight")
    parser.add_argument("--limit", type=int, default=10, help="warm worker limit")
    parser.add_argument("--process-limit", type=int, default=4, help="process worker limit")
    parser.add_argument(
        "--setups", default="engine,raw-warm,raw-process", help="comma-separated subset"
    )
    parser.add_argument("--timeout", type=float, default=None, help="seconds per burst at most")
    common_arguments(parser)
    args = parser.parse_args(argv)
    setups = [s.strip() for s in args.setups.split(",") if s.strip()]
    results: dict[str, Any] = {}
    with BenchStack("throughput", keep=args.keep) as stack:
        machine = machine_info()
        if "engine" in setups:
            stack.deploy_engine()
            worker = stack.start_warm_worker(limit=args.limit)
            api = stack.start_api()
            token = stack.token()
            engine_burst(stack.api_url, token, 2, 2)  # warm-up, not counted
            time.sleep(3)
            results["engine"] = drain(
                stack,
                "engine",
                args.n,
                lambda: engine_burst(stack.api_url, token, args.n, args.concurrency),
                stack.job_outcomes,
                "completed",
                ("failed",),
                args.timeout or 120 + args.n * 2.0,
            )
            stack.stop(worker)
            stack.stop(api)
        if "raw-warm" in setups:
            pool = f"bench-rawwarm-{secrets.token_hex(3)}"
            deployment = stack.deploy_raw_warm(pool)
            worker = stack.start_warm_worker(
                pool, limit=args.limit, query_seconds=0.5, listen=False, name="raw-warm-worker"
            )
            raw_burst(deployment, 2, 2)
            time.sleep(5)
            results["raw_warm"] = drain(
                stack,
                "raw-warm",
                args.n,
                lambda: raw_burst(deployment, args.n, args.concurrency),
                stack.flow_run_outcomes,
                "COMPLETED",
                ("FAILED", "CRASHED", "CANCELLED"),
                args.timeout or 120 + args.n * 2.0,
            )
            stack.stop(worker)
        if "raw-process" in setups and args.process_n > 0:
            pool = f"bench-process-{secrets.token_hex(3)}"
            deployment = stack.deploy_raw_process(pool)
            worker = stack.start_process_worker(pool, limit=args.process_limit)
            raw_burst(deployment, 1, 1)
            time.sleep(8)
            results["raw_process"] = drain(
                stack,
                "raw-process",
                args.process_n,
                lambda: raw_burst(deployment, args.process_n, args.concurrency),
                stack.flow_run_outcomes,
                "COMPLETED",
                ("FAILED", "CRASHED", "CANCELLED"),
                args.timeout or 120 + args.process_n * 4.0,
            )
            stack.stop(worker)

    print_table(
        "Throughput, burst of 3-step no-op jobs posted at once",
        ["setup", "jobs", "finished", "failed", "submit s", "drain s", "jobs/s"],
        [
            (
                name,
                r["submitted"],
                r["finished"],
                r["failed"],
                r["submit_seconds"],
                r["drain_seconds"],
                r["jobs_per_second"],
            )
            for name, r in results.items()
        ],
    )
    components = sorted({k for r in results.values() for k in r["cpu_seconds_per_job"]})
    print_table(
        "CPU-seconds per finished job, by component (during the burst)",
        ["component", *results.keys()],
        [(c, *(r["cpu_seconds_per_job"].get(c) for r in results.values())) for c in components],
    )
    engine = results.get("engine", {})
    targets = [check("engine throughput", engine.get("jobs_per_second"), ">=", 20.0, "jobs/s")]
    print_targets(targets)
    write_report(
        "throughput",
        {
            "machine": machine,
            "settings": {
                "n": args.n,
                "process_n": args.process_n,
                "concurrency": args.concurrency,
                "warm_worker_limit": args.limit,
                "process_worker_limit": args.process_limit,
                "workflow": "3 sequential json_transform steps returning their input",
                "prefect_server_database": "PostgreSQL (scratch database)",
            },
            "engine": results.get("engine"),
            "baselines": {k: v for k, v in results.items() if k != "engine"},
            "targets": targets,
            "all_met": all(t["met"] for t in targets),
        },
        args.report,
    )
    ok = bool(results) and all(r["finished"] == r["requested"] for r in results.values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
