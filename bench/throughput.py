"""Throughput: post a burst of 3-step no-op jobs at once and time until all have drained.

Setups in turn: engine (N x POST /workflows/start, 50 in flight, a warm worker of limit 10),
raw-warm (N x raw `run_deployment(timeout=0)` of the 3-task no-op flow on a warm worker, limit
10), raw-process (`--process-n` x the same on Prefect's process worker, limit 4: a process per
run costs ~2 CPU-seconds). jobs/s = finished / (last completion - first submission); the
CPU-seconds per component over each burst show where the time goes. Target: >= 20 jobs/s.
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
from bench.stacks import Benchmark, Setup, engine_running, post_jobs, raw_deployment, workflow_id
from cli.stack import LocalStack

METHOD = {"workflow": "3 sequential json_transform steps returning their input"}


def drain(
    stack: LocalStack, label: str, n: int, submit: Callable[[], list[str]], timeout: float
) -> Any:
    """Submit the burst, poll every 0.5 s until every run is final (or `timeout`); the counts,
    the rates and the CPU each component used meanwhile."""
    runs, wall0, t0 = label != "engine", time.time(), time.monotonic()
    done, failures = ("COMPLETED", out.FINAL_RUN[1:]) if runs else ("completed", ["failed"])

    def burst() -> tuple[list[str], float]:
        ids, seconds = submit(), time.monotonic() - t0
        seen: dict[str, float] = {}
        print(f"{label}: {len(ids)}/{n} submitted in {seconds:.1f} s", flush=True)
        while len(seen) < len(ids) and (left := t0 + timeout - time.monotonic()) > 0:
            waiting = [i for i in ids if i not in seen]
            seen |= out.wait_final(stack, waiting, timeout=min(15, left), runs=runs, every=0.5)
            if len(seen) < len(ids):
                took = time.monotonic() - t0
                print(f"  {label}: {len(seen)}/{len(ids)} final after {took:.0f} s", flush=True)
        return ids, seconds

    (ids, submit_seconds), cpu = out.with_cpu(stack, burst)
    state = out.outcomes(stack, ids, runs=runs)
    finished, counts = state["counts"].get(done, 0), state["counts"]
    failed = sum(counts.get(k, 0) for k in failures)
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
        "waited_seconds": round(time.monotonic() - t0, 1),
        "cpu_seconds": cpu,
        "cpu_seconds_per_job": {
            k: round(v / finished, 3) for k, v in cpu.items() if finished and v > 0
        },
        "counts": counts,
    }


def engine(stack: LocalStack, args: Any) -> Any:
    """Jobs posted through the API, run by the engine's warm worker."""
    with engine_running(stack, limit=args.limit) as token:

        def posts(n: int = args.n, concurrency: int = args.concurrency) -> list[str]:
            jobs = [(token, None, workflow_id(3), {"x": i}) for i in range(n)]
            return [a["job_id"] for a in post_jobs(stack, jobs, concurrency) if a.get("job_id")]

        posts(2, 2)  # warm-up, not counted
        time.sleep(3)
        return drain(stack, "engine", args.n, posts, args.timeout or 120 + args.n * 2.0)


def raw(stack: LocalStack, args: Any, kind: str) -> Any:
    """Raw runs of the no-op flow on a warm or a process worker (none with --process-n 0)."""
    process = kind == "process"
    n, limit = (args.process_n, args.process_limit) if process else (args.n, args.limit)
    if process and n <= 0:
        return None
    with raw_deployment(stack, kind, limit) as deployment:

        def runs(count: int = n, concurrency: int = args.concurrency) -> list[str]:
            params = lambda i: {"x": {"x": i}, "steps": 3}  # noqa: E731
            return [i for i in out.raw_burst(deployment, count, concurrency, params) if i]

        runs(*((1, 1) if process else (2, 2)))  # warm-up, not counted
        time.sleep(8 if process else 5)
        timeout = args.timeout or 120 + n * (4.0 if process else 2.0)
        return drain(stack, "raw-process" if process else "raw-warm", n, runs, timeout)


SETUPS: dict[str, Setup] = {"engine": engine, "raw-warm": partial(raw, kind="supaflow-warm")}
SETUPS["raw-process"] = partial(raw, kind="process")
OPTIONS = [
    ("--n", 1000, "jobs per burst (default 1000)", "n"),
    ("--process-n", 200, "burst on the process worker (default 200)", "process_n"),
    ("--concurrency", 50, "submissions in flight", "concurrency"),
    out.WARM_LIMIT,
    out.PROCESS_LIMIT,
    ("--timeout", None, "seconds per burst at most"),
]


def show(_args: Any, results: dict[str, Any]) -> Any:
    """The burst and CPU tables; the target."""
    keys = ("submitted", "finished", "failed", "submit_seconds", "drain_seconds", "jobs_per_second")
    rows = [(name, *(r[k] for k in keys)) for name, r in results.items()]
    headers = ["setup", "jobs", "finished", "failed", "submit s", "drain s", "jobs/s"]
    out.print_table("Throughput, burst of 3-step no-op jobs posted at once", headers, rows)
    parts = sorted({k for r in results.values() for k in r["cpu_seconds_per_job"]})
    rows = [(c, *(r["cpu_seconds_per_job"].get(c) for r in results.values())) for c in parts]
    title = "CPU-seconds per finished job, by component (during the burst)"
    out.print_table(title, ["component", *results.keys()], rows)
    rate = results.get("engine", {}).get("jobs_per_second")
    targets = [out.check("engine throughput", rate, ">=", 20.0, "jobs/s")]
    ok = bool(results) and all(r["finished"] == r["requested"] for r in results.values())
    return targets, {}, ok


main = Benchmark("throughput", __doc__, OPTIONS, SETUPS, show, METHOD)

if __name__ == "__main__":
    sys.exit(main())
