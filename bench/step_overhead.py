"""Step overhead: the engine's cost per step against a raw Prefect task in one flow run.

In this process, on one Prefect server (PostgreSQL), interleaved run by run: the engine's
`run_workflow(job_id)` for jobs of 1 and of 1+K no-op steps (each step a task run that maps its
input, records `running`, its events and its output in PostgreSQL and logs to Prefect), and a
raw Prefect flow of 1 and of 1+K no-op tasks, submitted and awaited like the engine's steps
(and, for reference, called directly). Per step = (median of 1+K steps - median of 1) / K, so
a flow run's fixed cost cancels out; the per-run heartbeat thread is off, as in the warm
worker. Target: engine per-step <= 1.3 x the raw task's.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

if not __package__:  # run as a file: import `bench` from the project root
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from bench import report as out
from bench.stacks import Benchmark, install_noop_workflow, workflow_id
from cli.stack import LocalStack

#: The engine's steps, raw Prefect tasks submitted to the task runner, tasks called directly.
SIDES = ("engine", "raw_submit", "raw_direct")
METHOD = {
    "where": "in-process flow calls in one process, heartbeat thread off",
    "step": "json_transform returning its input / a no-op Prefect task",
}


def sides(failures: list[str]) -> dict[str, Callable[[int], Any]]:
    """Per side (`SIDES`), one run of a flow of `steps` steps (a failed job in `failures`)."""
    from bench.raw_flow import raw_noop_flow, raw_noop_flow_direct
    from cli.local_auth import ensure_local_user
    from engine.db.connection import shared_store
    from flows.run_workflow import run_workflow

    store, user_id = shared_store(), ensure_local_user("bench@example.com")

    def engine(steps: int) -> None:
        job = store.create_job(user_id=user_id, workflow_id=workflow_id(steps), input_data={"x": 1})
        run_workflow(job.id)
        if (status := store.get_job(job.id)["status"]) != "completed":
            failures.append(f"job {job.id}: {status}")

    return {
        "engine": engine,
        "raw_submit": lambda steps: raw_noop_flow(x={"x": 1}, steps=steps),
        "raw_direct": lambda steps: raw_noop_flow_direct(x={"x": 1}, steps=steps),
    }


def measure(stack: LocalStack, args: argparse.Namespace) -> dict[str, Any]:
    """Every side `--warmup` + `--reps` times per shape (1 and 1+K steps), interleaved; per
    side its `per_step` result, and under `failures` the engine jobs that did not complete."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    shapes, log = (1, 1 + args.steps), stack.log_dir / "in-process-flows.log"
    failures: list[str] = []
    for steps in shapes:
        install_noop_workflow(steps)
    runs = sides(failures)
    times: dict[str, dict[int, list[float]]] = {name: {s: [] for s in shapes} for name in runs}
    print(f"running {args.warmup + args.reps} x {len(shapes)} shapes x 3 sides; logs: {log}")
    with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}), out.stderr_to(log):
        for rep in range(args.warmup + args.reps):
            for steps in shapes:
                for name, run in runs.items():
                    started = time.perf_counter()
                    run(steps)
                    if rep >= args.warmup:
                        times[name][steps].append(time.perf_counter() - started)
        # Send the queued logs and events while the server is still up.
        APILogWorker.drain_all(timeout=15)
        EventsWorker.drain_all(timeout=15)
    results = {name: per_step(by_shape, args.steps) for name, by_shape in times.items()}
    return {**results, "failures": failures}


def per_step(by_shape: dict[int, list[float]], k: int) -> dict[str, Any]:
    """Median and every run time per shape, and the time per step (1+K steps against 1)."""
    median = {s: statistics.median(v) for s, v in by_shape.items()}
    return {
        "run_seconds_median": {str(s): round(m, 4) for s, m in median.items()},
        "run_seconds_all": {str(s): [round(x, 4) for x in v] for s, v in by_shape.items()},
        "per_step_seconds": round((median[1 + k] - median[1]) / k, 5),
    }


def ratio(a: float, b: float) -> float | None:
    """a / b rounded, None unless b > 0."""
    return round(a / b, 3) if b > 0 else None


OPTIONS = [
    ("--steps", 20, "K: extra steps (default 20)", "extra_steps"),
    ("--reps", 15, "runs of each shape (default 15)", "reps"),
    ("--warmup", 2, "unmeasured runs of each first", "warmup"),
]


def show(args: Any, results: dict[str, Any]) -> Any:
    """The table and the ratios; the target."""
    k, failures = args.steps, results.pop("failures")
    if failures:
        print(f"{len(failures)} engine jobs did not complete: {failures[:3]}")
    step = {name: r["per_step_seconds"] for name, r in results.items()}
    rows = [
        (
            name,
            *r["run_seconds_median"].values(),
            round(step[name] * 1000, 2),
            ratio(step[name], step["raw_submit"]),
        )
        for name, r in results.items()
    ]
    headers = ["side", "1-step run s", f"{1 + k}-step run s", "per step ms", "x raw task"]
    title = f"Step overhead (medians of {args.reps} runs; per step = (t[{1 + k}] - t[1]) / {k})"
    out.print_table(title, headers, rows)
    ratios = {f"ratio_engine_over_{s}": ratio(step["engine"], step[s]) for s in SIDES[1:]}
    engine_ratio = ratios["ratio_engine_over_raw_submit"]
    targets = [out.check("engine step / raw Prefect task", engine_ratio, "<=", 1.3, "x")]
    return targets, {**ratios, "engine_jobs_not_completed": len(failures)}, not failures


main = Benchmark("step_overhead", __doc__, OPTIONS, measure, show, METHOD)

if __name__ == "__main__":
    sys.exit(main())
