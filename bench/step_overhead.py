"""Step overhead: the engine's cost per step against a raw Prefect task in one flow run.

    .venv/bin/python bench/step_overhead.py                 # 1 vs 21 steps, 15 runs each
    .venv/bin/python bench/step_overhead.py --reps 3 --steps 5   # the CI size

Both sides run in this process, against the same Prefect server (PostgreSQL), one after the
other, interleaved run by run:
- engine: `run_workflow(job_id)` (the flow every job runs) for a job of a workflow of
  1 and of 1+K sequential no-op steps: each step is a task run that maps its input, records
  `running`, its events and its output in PostgreSQL, and logs to the Prefect API;
- raw: a Prefect flow of 1 and of 1+K no-op tasks, each submitted to the flow's task runner
  and awaited like the engine's steps (and, for reference, called directly).

Per-step time = (median time of the 1+K-step run - median time of the 1-step run) / K, so
the fixed cost of a flow run cancels out. Both run with Prefect's per-run heartbeat thread
off, as the warm worker does. Target: engine per-step <= 1.3 x the raw task's.
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

from bench.report import check, finish, machine_info, parse, print_table, stderr_to
from bench.stacks import install_noop_workflow, perf_stack, workflow_id

SIDES = ("engine", "raw_submit", "raw_direct")
Times = dict[str, dict[int, list[float]]]


def timed(run: Callable[..., Any], *args: Any, **kwargs: Any) -> float:
    """Seconds one call takes."""
    started = time.perf_counter()
    run(*args, **kwargs)
    return time.perf_counter() - started


def measure(
    args: argparse.Namespace, shapes: tuple[int, int], log: Path
) -> tuple[Times, list[str]]:
    """Run every side `--warmup` + `--reps` times per shape, interleaved; the measured times
    and the engine jobs that did not complete."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    from bench.raw_flow import raw_noop_flow, raw_noop_flow_direct
    from cli.local_auth import ensure_local_user
    from engine.db.connection import shared_store
    from flows.run_workflow import run_workflow

    store = shared_store()
    user_id = ensure_local_user("bench@example.com")
    failures: list[str] = []

    def engine_run(steps: int) -> None:
        job = store.create_job(user_id=user_id, workflow_id=workflow_id(steps), input_data={"x": 1})
        run_workflow(job.id)
        status = store.get_job(job.id)["status"]
        if status != "completed":
            failures.append(f"job {job.id}: {status}")

    runs: dict[str, Callable[..., Any]] = {
        "engine": engine_run,
        "raw_submit": raw_noop_flow,
        "raw_direct": raw_noop_flow_direct,
    }
    times: Times = {name: {s: [] for s in shapes} for name in SIDES}
    print(f"running {args.warmup + args.reps} x {len(shapes)} shapes x 3 sides; logs: {log}")
    with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}), stderr_to(log):
        for rep in range(args.warmup + args.reps):
            for steps in shapes:
                for name in SIDES:
                    kwargs = {} if name == "engine" else {"x": {"x": 1}}
                    seconds = timed(runs[name], steps=steps, **kwargs)
                    if rep >= args.warmup:
                        times[name][steps].append(seconds)
        # Send the queued logs and events while the server is still up.
        APILogWorker.drain_all(timeout=15)
        EventsWorker.drain_all(timeout=15)
    return times, failures


def summarize_sides(times: Times, shapes: tuple[int, int], k: int) -> dict[str, Any]:
    """Per side: median run time per shape, every run time, and the time per step."""
    result: dict[str, Any] = {}
    for name, by_shape in times.items():
        small, large = (statistics.median(by_shape[s]) for s in shapes)
        result[name] = {
            "run_seconds_median": {
                str(s): round(statistics.median(v), 4) for s, v in by_shape.items()
            },
            "run_seconds_all": {str(s): [round(x, 4) for x in v] for s, v in by_shape.items()},
            "per_step_seconds": round((large - small) / k, 5),
        }
    return result


def ratio(a: float, b: float) -> float | None:
    """a / b rounded, None unless b > 0."""
    return round(a / b, 3) if b > 0 else None


def main(argv: list[str] | None = None) -> int:
    """Measure both sides, print the table and the ratio, write the JSON."""
    args = parse(
        __doc__,
        argv,
        ("--steps", 20, "K: extra steps (default 20)"),
        ("--reps", 15, "runs of each shape (default 15)"),
        ("--warmup", 2, "unmeasured runs of each first"),
    )
    k = args.steps
    shapes = (1, 1 + k)
    with perf_stack("step-overhead", keep=args.keep) as stack:
        machine = machine_info()
        for steps in shapes:
            install_noop_workflow(steps)
        times, failures = measure(args, shapes, stack.log_dir / "in-process-flows.log")
    if failures:
        print(f"{len(failures)} engine jobs did not complete: {failures[:3]}")
    result = summarize_sides(times, shapes, k)
    engine_step, raw_step = (result[s]["per_step_seconds"] for s in ("engine", "raw_submit"))
    print_table(
        f"Step overhead (medians of {args.reps} runs; per step = (t[{shapes[1]}] - t[1]) / {k})",
        ["side", "1-step run s", f"{shapes[1]}-step run s", "per step ms", "x raw task"],
        [
            (
                name,
                *(r["run_seconds_median"][str(s)] for s in shapes),
                round(r["per_step_seconds"] * 1000, 2),
                round(r["per_step_seconds"] / raw_step, 2) if raw_step > 0 else None,
            )
            for name, r in result.items()
        ],
    )
    targets = [
        check("engine step / raw Prefect task", ratio(engine_step, raw_step), "<=", 1.3, "x")
    ]
    settings = {
        "extra_steps": k,
        "reps": args.reps,
        "warmup": args.warmup,
        "where": "in-process flow calls in one process, heartbeat thread off",
        "step": "json_transform returning its input / a no-op Prefect task",
        "prefect_server_database": "PostgreSQL (scratch database)",
    }
    data = {"machine": machine, "settings": settings, "engine": result["engine"]}
    data["baselines"] = {"raw_submit": result["raw_submit"], "raw_direct": result["raw_direct"]}
    data["ratio_engine_over_raw_submit"] = ratio(engine_step, raw_step)
    data["ratio_engine_over_raw_direct"] = ratio(
        engine_step, result["raw_direct"]["per_step_seconds"]
    )
    data["engine_jobs_not_completed"] = len(failures)
    finish("step_overhead", args, data, targets)
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
