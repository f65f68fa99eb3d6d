"""Latency of a 3-step no-op job: the engine against raw Prefect, same server, same run.

    .venv/bin/python bench/latency.py              # 50 jobs per setup
    .venv/bin/python bench/latency.py --n 5        # the CI size

One job at a time after a warm-up, per setup: engine (POST /workflows/start until the job row
is `completed`; the warm worker runs it, woken by NOTIFY), raw-process (raw `run_deployment
(timeout=0)` of a 3-task no-op flow on Prefect's process worker, query 0.5 s, command set),
raw-warm (the raw flow on a warm worker polling 0.5 s, no LISTEN). Completion: the job /
flow_run row polled every 20 ms. Targets: engine p50 <= 0.5 s, p95 <= 1 s.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

if not __package__:  # run as a file: import `bench` from the project root
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from bench import report as out
from bench.stacks import raw_deployment, run_setups, start_engine, workflow_id
from cli.stack import LocalStack

METHOD = {
    "workflow": "3 sequential json_transform steps returning their input",
    "process_worker_query_seconds": 0.5,
    "raw_warm_worker_query_seconds": 0.5,
    "prefect_server_database": "PostgreSQL (scratch database)",
    "completion_seen_by": "polling the job / flow_run row every 20 ms",
}


def measure(stack: LocalStack, args: Any, label: str, start: Callable[[], str], runs: bool) -> Any:
    """`--warmup` then `--n` runs one after the other: seconds from the start call until the
    run is seen final, and the seconds the start call took."""
    totals, submits, lost = [], [], 0
    for i in range(args.warmup + args.n):
        t0 = time.monotonic()
        run_id = start()
        t1 = time.monotonic()
        timeout = args.timeout if i >= args.warmup else max(args.timeout, 180)
        done = out.wait_final(stack, [run_id], timeout=timeout, runs=runs)
        if run_id not in done:
            print(f"  {label}: run {run_id} not finished within {args.timeout:.0f} s", flush=True)
            lost += i >= args.warmup
        elif i >= args.warmup:
            totals.append(done[run_id] - t0)
            submits.append(t1 - t0)
    stats = out.summarize(totals)
    print(
        f"{label:12s} " + " ".join(f"{k}={stats.get(k)}" for k in ("n", "p50", "p95", "p99")) + " s"
    )
    return {
        "latency_seconds": stats,
        "start_call_seconds": out.summarize(submits),
        "not_finished": lost,
    }


def engine(stack: LocalStack, args: Any) -> Any:
    """Jobs through the API, run by the engine's warm worker."""
    headers = {"Authorization": f"Bearer {start_engine(stack, limit=args.limit)}"}
    body = {"workflow_id": workflow_id(3), "input_data": {"x": 1}}
    with httpx.Client(base_url=stack.api_url, headers=headers, timeout=30) as client:
        post = lambda: str(client.post("/workflows/start", json=body).json()["job_id"])  # noqa: E731
        result = measure(stack, args, "engine", post, runs=False)
    stack.stop("warm-worker")
    stack.stop("api")
    return result


def raw(label: str, kind: str, limit: str) -> Callable[[LocalStack, Any], Any]:
    """The raw no-op flow on a worker of `kind`, its limit the option `limit`."""

    def setup(stack: LocalStack, args: Any) -> Any:
        with raw_deployment(stack, kind, getattr(args, limit)) as deployment:
            start = lambda: out.run_raw(deployment, {"x": {"x": 1}, "steps": 3})  # noqa: E731
            return measure(stack, args, label, start, runs=True)

    return setup


def main(argv: list[str] | None = None) -> int:
    """Run every setup, print the table, write the JSON; 0 unless a setup could not run."""
    args = out.parse(
        __doc__,
        argv,
        ("--n", 50, "measured jobs per setup (default 50)", "n"),
        ("--warmup", 2, "unmeasured jobs first", "warmup"),
        ("--limit", 10, "warm worker limit", "warm_worker_limit"),
        ("--process-limit", 4, "process worker limit", "process_worker_limit"),
        ("--timeout", 60.0, "seconds per job at most"),
        ("--setups", "engine,raw-process,raw-warm", "comma-separated subset"),
    )
    setups = {"engine": engine, "raw-process": raw("raw-process", "process", "process_limit")}
    setups["raw-warm"] = raw("raw-warm", "supaflow-warm", "limit")
    machine, results = run_setups("latency", args, setups)
    rows = [
        (
            name,
            *out.cells(r["latency_seconds"]),
            r["start_call_seconds"].get("p50"),
            r["not_finished"],
        )
        for name, r in results.items()
    ]
    title = f"Latency, 3-step no-op job, start -> completed (seconds; n={args.n} per setup)"
    out.print_table(
        title, ["setup", "n", "p50", "p95", "p99", "max", "start call p50", "not finished"], rows
    )
    p50 = {name: r["latency_seconds"].get("p50") for name, r in results.items()}
    mine = results.get("engine", {}).get("latency_seconds", {})
    targets = [out.check("engine latency p50", mine.get("p50"), "<=", 0.5, "s")]
    targets.append(out.check("engine latency p95", mine.get("p95"), "<=", 1.0, "s"))
    ratios = {
        f"engine_p50_over_{name}_p50": round(p50["engine"] / p, 3)
        for name, p in p50.items()
        if name != "engine" and p50.get("engine") and p
    }
    settings = {**args.settings, **METHOD}
    measured = {"machine": machine, "settings": settings, **out.split(results), "ratios": ratios}
    out.finish("latency", args, measured, targets)
    return 0 if results and all(r["latency_seconds"].get("n") for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
