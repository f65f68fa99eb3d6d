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
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

if not __package__:  # run as a file: import `bench` from the project root
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from bench import report as out
from bench.measure import EngineClient, run_raw, wait_final
from bench.stacks import deploy_raw, run_setups, start_engine, start_raw_worker, workflow_id
from cli.stack import LocalStack


def measure(
    args: argparse.Namespace,
    label: str,
    start: Callable[[], str],
    wait: Callable[[str, float], bool],
) -> dict[str, Any]:
    """`--warmup` then `--n` runs one after the other; seconds from start to seen final, and
    the seconds the start call itself took."""
    totals: list[float] = []
    submits: list[float] = []
    lost = 0
    for i in range(args.warmup + args.n):
        t0 = time.monotonic()
        run_id = start()
        t1 = time.monotonic()
        if not wait(run_id, args.timeout if i >= args.warmup else max(args.timeout, 180)):
            print(f"  run {run_id} not finished within {args.timeout:.0f} s", flush=True)
            lost += i >= args.warmup
        elif i >= args.warmup:
            totals.append(time.monotonic() - t0)
            submits.append(t1 - t0)
    stats = out.summarize(totals)
    p = [stats.get(k) for k in ("n", "p50", "p95", "p99")]
    print(f"{label:12s} n={p[0]} p50={p[1]} p95={p[2]} p99={p[3]} s", flush=True)
    return {
        "latency_seconds": stats,
        "start_call_seconds": out.summarize(submits),
        "not_finished": lost,
    }


def engine(stack: LocalStack, args: argparse.Namespace) -> dict[str, Any]:
    """Jobs through the API, run by the engine's warm worker."""
    client = EngineClient(stack.api_url, start_engine(stack, limit=args.limit))
    result = measure(
        args,
        "engine",
        lambda: client.start(workflow_id(3), {"x": 1}),
        lambda job, t: bool(wait_final(stack, [job], timeout=t)),
    )
    client.close()
    stack.stop("warm-worker")
    stack.stop("api")
    return result


def raw(kind: str, limit: str) -> Callable[[LocalStack, argparse.Namespace], dict[str, Any]]:
    """The raw no-op flow on a worker of `kind` with the limit option `limit`."""

    def setup(stack: LocalStack, args: argparse.Namespace) -> dict[str, Any]:
        deployment, pool = deploy_raw(stack, kind)
        worker = start_raw_worker(stack, kind, pool, getattr(args, limit))
        result = measure(
            args,
            "raw-process" if kind == "process" else "raw-warm",
            lambda: run_raw(deployment, {"x": {"x": 1}, "steps": 3}),
            lambda run, t: bool(wait_final(stack, [run], timeout=t, runs=True)),
        )
        stack.stop(worker)
        return result

    return setup


SETUPS = {
    "engine": engine,
    "raw-process": raw("process", "process_limit"),
    "raw-warm": raw("supaflow-warm", "limit"),
}


def main(argv: list[str] | None = None) -> int:
    """Run every setup, print the table, write the JSON; 0 unless a setup could not run."""
    args = out.parse(
        __doc__,
        argv,
        ("--n", 50, "measured jobs per setup (default 50)"),
        ("--warmup", 2, "unmeasured jobs first"),
        ("--limit", 10, "warm worker limit"),
        ("--process-limit", 4, "process worker limit"),
        ("--timeout", 60.0, "seconds per job at most"),
        ("--setups", "engine,raw-process,raw-warm", "comma-separated subset"),
    )
    machine, results = run_setups("latency", args, SETUPS)
    out.print_table(
        f"Latency, 3-step no-op job, start -> completed (seconds; n={args.n} per setup)",
        ["setup", "n", "p50", "p95", "p99", "max", "start call p50", "not finished"],
        [
            (
                name,
                *out.cells(r["latency_seconds"]),
                r["start_call_seconds"].get("p50"),
                r["not_finished"],
            )
            for name, r in results.items()
        ],
    )
    p50 = {name: r["latency_seconds"].get("p50") for name, r in results.items()}
    engine_stats = results.get("engine", {}).get("latency_seconds", {})
    targets = [
        out.check("engine latency p50", engine_stats.get("p50"), "<=", 0.5, "s"),
        out.check("engine latency p95", engine_stats.get("p95"), "<=", 1.0, "s"),
    ]
    ratios = {
        f"engine_p50_over_{name}_p50": round(p50["engine"] / p, 3)
        for name, p in p50.items()
        if name != "engine" and p50.get("engine") and p
    }
    settings = {
        "n": args.n,
        "warmup": args.warmup,
        "workflow": "3 sequential json_transform steps returning their input",
        "warm_worker_limit": args.limit,
        "process_worker_limit": args.process_limit,
        "process_worker_query_seconds": 0.5,
        "raw_warm_worker_query_seconds": 0.5,
        "prefect_server_database": "PostgreSQL (scratch database)",
        "completion_seen_by": "polling the job / flow_run row every 20 ms",
    }
    measured = {"machine": machine, "settings": settings, **out.split(results), "ratios": ratios}
    out.finish("latency", args, measured, targets)
    return 0 if results and all(r["latency_seconds"].get("n") for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
