"""Latency of a 3-step no-op job: the engine against raw Prefect, same server, same run.

    .venv/bin/python bench/latency.py              # 50 jobs per setup
    .venv/bin/python bench/latency.py --n 5        # the CI size

Setups, each measured one job at a time after a warm-up job:
- engine: POST /workflows/start (real API, local-auth token) until the job row is
  `completed`; the job runs on the engine's warm worker (woken by NOTIFY);
- raw-process: raw Prefect, `run_deployment(timeout=0)` of a 3-task no-op flow until its flow
  run is Completed, on Prefect's process worker (query 0.5 s, `job_variables.command` set:
  the fastest process setup measured in PREFECT_NOTES.md);
- raw-warm: the same raw flow on a warm worker (polling 0.5 s, no LISTEN), which separates
  the engine's own cost from the execution model.

Completion is seen by polling the job row / the flow_run row every 20 ms, straight from the
database in both cases. The Prefect server runs on a scratch PostgreSQL database.
Targets: engine p50 <= 0.5 s, p95 <= 1 s.
"""

from __future__ import annotations

import argparse
import secrets
import sys
import time
from collections.abc import Callable
from typing import Any

from common import (
    BenchStack,
    EngineClient,
    check,
    common_arguments,
    machine_info,
    print_table,
    print_targets,
    run_raw,
    summarize,
    wait_flow_runs,
    wait_jobs,
    workflow_id,
    write_report,
)


def measure(
    n: int,
    warmup: int,
    start: Callable[[], str],
    wait: Callable[[list[str], float], dict[str, float]],
    timeout: float,
    label: str,
) -> dict[str, Any]:
    """`warmup` then `n` runs one after the other; seconds from start to seen final, and
    the seconds the start call itself took."""
    totals: list[float] = []
    submits: list[float] = []
    lost = 0
    for i in range(warmup + n):
        t0 = time.monotonic()
        run_id = start()
        t1 = time.monotonic()
        done = wait([run_id], timeout if i >= warmup else max(timeout, 180))
        if run_id not in done:
            print(f"  {label}: run {run_id} not finished within {timeout:.0f} s", flush=True)
            if i >= warmup:
                lost += 1
            continue
        if i >= warmup:
            totals.append(done[run_id] - t0)
            submits.append(t1 - t0)
    stats = summarize(totals)
    print(
        f"{label:12s} n={stats.get('n')} p50={stats.get('p50')} p95={stats.get('p95')} "
        f"p99={stats.get('p99')} s",
        flush=True,
    )
    return {
        "latency_seconds": stats,
        "start_call_seconds": summarize(submits),
        "not_finished": lost,
    }


def main(argv: list[str] | None = None) -> int:
    """Run every setup, print the table, write the JSON; 0 unless a setup could not run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--n", type=int, default=50, help="measured jobs per setup (default 50)")
    parser.add_argument("--warmup", type=int, default=2, help="unmeasured jobs first")
    parser.add_argument("--limit", type=int, default=10, help="warm worker limit")
    parser.add_argument("--process-limit", type=int, default=4, help="process worker limit")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per job at most")
    parser.add_argument(
        "--setups", default="engine,raw-process,raw-warm", help="comma-separated subset"
    )
    common_arguments(parser)
    args = parser.parse_args(argv)
    setups = [s.strip() for s in args.setups.split(",") if s.strip()]
    results: dict[str, Any] = {}
    with BenchStack("latency", keep=args.keep) as stack:
        machine = machine_info()
        wid = workflow_id(3)
        if "engine" in setups:
            stack.deploy_engine()
            worker = stack.start_warm_worker(limit=args.limit)
            stack.start_api()
            client = EngineClient(stack.api_url, stack.token())
            results["engine"] = measure(
                args.n,
                args.warmup,
                lambda: client.start(wid, {"x": 1}),
                lambda ids, t: wait_jobs(stack, ids, timeout=t),
                args.timeout,
                "engine",
            )
            client.close()
            stack.stop(worker)
        if "raw-process" in setups:
            pool = f"bench-process-{secrets.token_hex(3)}"
            deployment = stack.deploy_raw_process(pool)
            worker = stack.start_process_worker(pool, limit=args.process_limit)
            results["raw_process"] = measure(
                args.n,
                args.warmup,
                lambda: run_raw(deployment, {"x": {"x": 1}, "steps": 3}),
                lambda ids, t: wait_flow_runs(stack, ids, timeout=t),
                args.timeout,
                "raw-process",
            )
            stack.stop(worker)
        if "raw-warm" in setups:
            pool = f"bench-rawwarm-{secrets.token_hex(3)}"
            deployment = stack.deploy_raw_warm(pool)
            worker = stack.start_warm_worker(
                pool, limit=args.limit, query_seconds=0.5, listen=False, name="raw-warm-worker"
            )
            results["raw_warm"] = measure(
                args.n,
                args.warmup,
                lambda: run_raw(deployment, {"x": {"x": 1}, "steps": 3}),
                lambda ids, t: wait_flow_runs(stack, ids, timeout=t),
                args.timeout,
                "raw-warm",
            )
            stack.stop(worker)

    rows = []
    for name, result in results.items():
        lat = result["latency_seconds"]
        rows.append(
            (
                name,
                lat.get("n"),
                lat.get("p50"),
                lat.get("p95"),
                lat.get("p99"),
                lat.get("max"),
                result["start_call_seconds"].get("p50"),
                result["not_finished"],
            )
        )
    print_table(
        f"Latency, 3-step no-op job, start -> completed (seconds; n={args.n} per setup)",
        ["setup", "n", "p50", "p95", "p99", "max", "start call p50", "not finished"],
        rows,
    )
    engine = results.get("engine", {}).get("latency_seconds", {})
    targets = [
        check("engine latency p50", engine.get("p50"), "<=", 0.5, "s"),
        check("engine latency p95", engine.get("p95"), "<=", 1.0, "s"),
    ]
    print_targets(targets)
    ratios = {
        f"engine_p50_over_{name}_p50": round(engine["p50"] / r["latency_seconds"]["p50"], 3)
        for name, r in results.items()
        if name != "engine" and engine.get("p50") and r["latency_seconds"].get("p50")
    }
    write_report(
        "latency",
        {
            "machine": machine,
            "settings": {
                "n": args.n,
                "warmup": args.warmup,
                "workflow": "3 sequential json_transform steps returning their input",
                "warm_worker_limit": args.limit,
                "process_worker_limit": args.process_limit,
                "process_worker_query_seconds": 0.5,
                "raw_warm_worker_query_seconds": 0.5,
                "prefect_server_database": "PostgreSQL (scratch database)",
                "completion_seen_by": "polling the job / flow_run row every 20 ms",
            },
            "engine": results.get("engine"),
            "baselines": {k: v for k, v in results.items() if k != "engine"},
            "ratios": ratios,
            "targets": targets,
            "all_met": all(t["met"] for t in targets),
        },
        args.report,
    )
    complete = all(r["latency_seconds"].get("n") for r in results.values())
    return 0 if results and complete else 1


if __name__ == "__main__":
    sys.exit(main())
