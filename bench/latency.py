"""Latency of a 3-step no-op job: the engine against raw Prefect, same server, same run.

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
from functools import partial
from pathlib import Path
from typing import Any

if not __package__:  # run as a file: import `bench` from the project root
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from bench import report as out
from bench.stacks import Benchmark, starter
from cli.stack import LocalStack

METHOD = {
    "workflow": "3 sequential json_transform steps returning their input",
    "process_worker_query_seconds": 0.5,
    "raw_warm_worker_query_seconds": 0.5,
    "completion_seen_by": "polling the job / flow_run row every 20 ms",
}


def measure(stack: LocalStack, args: Any, label: str, start: Callable[[], str]) -> Any:
    """`--warmup` then `--n` runs one after the other: seconds from the start call until the
    run is seen final, and the seconds the start call took."""
    totals, submits, lost, runs = [], [], 0, not label.startswith("engine")
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
    line = " ".join(f"{k}={stats.get(k)}" for k in ("n", "p50", "p95", "p99"))
    print(f"{label:12s} {line} s")
    submit_stats = out.summarize(submits)
    return {"latency_seconds": stats, "start_call_seconds": submit_stats, "not_finished": lost}


def setup(stack: LocalStack, args: Any, label: str, kind: str, limit: str) -> Any:
    """One job at a time on `kind` ("engine" or a worker type), its limit the option `limit`."""
    with starter(stack, kind, 3, {"x": 1}, getattr(args, limit)) as start:
        return measure(stack, args, label, start)


SETUPS = {
    "engine": partial(setup, label="engine", kind="engine", limit="limit"),
    "raw-process": partial(setup, label="raw-process", kind="process", limit="process_limit"),
    "raw-warm": partial(setup, label="raw-warm", kind="supaflow-warm", limit="limit"),
}
TIMEOUT = ("--timeout", 60.0, "seconds per job at most")
OPTIONS = [*out.one_at_a_time(50, 2), out.WARM_LIMIT, out.PROCESS_LIMIT, TIMEOUT]


def show(args: Any, results: dict[str, Any]) -> Any:
    """The latency table; the targets and the engine's p50 over each baseline's."""
    rows = [
        (
            name,
            *out.cells(r["latency_seconds"]),
            r["start_call_seconds"].get("p50"),
            r["not_finished"],
        )
        for name, r in results.items()
    ]
    headers = ["setup", "n", "p50", "p95", "p99", "max", "start call p50", "not finished"]
    title = f"Latency, 3-step no-op job, start -> completed (seconds; n={args.n} per setup)"
    out.print_table(title, headers, rows)
    p50 = {name: r["latency_seconds"].get("p50") for name, r in results.items()}
    mine = results.get("engine", {}).get("latency_seconds", {})
    targets = [out.check("engine latency p50", mine.get("p50"), "<=", 0.5, "s")]
    targets.append(out.check("engine latency p95", mine.get("p95"), "<=", 1.0, "s"))
    ratios = {
        f"engine_p50_over_{name}_p50": round(p50["engine"] / p, 3)
        for name, p in p50.items()
        if name != "engine" and p50.get("engine") and p
    }
    ran = bool(results) and all(r["latency_seconds"].get("n") for r in results.values())
    return targets, {"ratios": ratios}, ran


main = Benchmark("latency", __doc__, OPTIONS, SETUPS, show, METHOD)

if __name__ == "__main__":
    sys.exit(main())
