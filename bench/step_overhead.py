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
from typing import Any

from common import (
    BenchStack,
    check,
    common_arguments,
    machine_info,
    print_table,
    print_targets,
    stderr_to,
    write_report,
)


def timed(run: Callable[..., Any], *args: Any, **kwargs: Any) -> float:
    """Seconds one call takes."""
    started = time.perf_counter()
    run(*args, **kwargs)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    """Measure both sides, print the table and the ratio, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--steps", type=int, default=20, help="K: extra steps (default 20)")
    parser.add_argument("--reps", type=int, default=15, help="runs of each shape (default 15)")
    parser.add_argument("--warmup", type=int, default=2, help="unmeasured runs of each first")
    common_arguments(parser)
    args = parser.parse_args(argv)
    k = args.steps
    shapes = (1, 1 + k)
    times: dict[str, dict[int, list[float]]] = {
        name: {s: [] for s in shapes} for name in ("engine", "raw_submit", "raw_direct")
    }
    with BenchStack("step-overhead", keep=args.keep) as stack:
        machine = machine_info()
        from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
        from raw_flow import raw_noop_flow, raw_noop_flow_direct

        from cli.local_auth import ensure_local_user
        from engine.db.connection import shared_store
        from flows.run_workflow import run_workflow

        store = shared_store()
        for steps in shapes:
            stack.install_noop_workflow(steps)
        user_id = ensure_local_user("bench@example.com")
        failures: list[str] = []

        def engine_run(steps: int) -> None:
            job = store.create_job(
                user_id=user_id, workflow_id=f"bench_noop_{steps}", input_data={"x": 1}
            )
            run_workflow(job.id)
            status = store.get_job(job.id)["status"]
            if status != "completed":
                failures.append(f"job {job.id}: {status}")

        log = stack.log_dir / "in-process-flows.log"
        print(f"running {args.warmup + args.reps} x {len(shapes)} shapes x 3 sides; logs: {log}")
        with (
            temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}),
            stderr_to(log),
        ):
            for rep in range(args.warmup + args.reps):
                for steps in shapes:
                    sample = {
                        "engine": timed(engine_run, steps),
                        "raw_submit": timed(raw_noop_flow, x={"x": 1}, steps=steps),
                        "raw_direct": timed(raw_noop_flow_direct, x={"x": 1}, steps=steps),
                    }
                    if rep >= args.warmup:
                        for name, seconds in sample.items():
                            times[name][steps].append(seconds)
            # Send the queued logs and events while the server is still up.
            from prefect.events.worker import EventsWorker
            from prefect.logging.handlers import APILogWorker

            APILogWorker.drain_all(timeout=15)
            EventsWorker.drain_all(timeout=15)
        if failures:
            print(f"{len(failures)} engine jobs did not complete: {failures[:3]}")

    result: dict[str, Any] = {}
    for name, by_shape in times.items():
        small = statistics.median(by_shape[shapes[0]])
        large = statistics.median(by_shape[shapes[1]])
        result[name] = {
            "run_seconds_median": {
                str(s): round(statistics.median(v), 4) for s, v in by_shape.items()
            },
            "run_seconds_all": {str(s): [round(x, 4) for x in v] for s, v in by_shape.items()},
            "per_step_seconds": round((large - small) / k, 5),
        }
    engine_step = result["engine"]["per_step_seconds"]
    raw_step = result["raw_submit"]["per_step_seconds"]
    ratio = round(engine_step / raw_step, 3) if raw_step > 0 else None
    ratio_direct = (
        round(engine_step / result["raw_direct"]["per_step_seconds"], 3)
        if result["raw_direct"]["per_step_seconds"] > 0
        else None
    )
    print_table(
        f"Step overhead (medians of {args.reps} runs; per step = (t[{shapes[1]}] - t[1]) / {k})",
        ["side", "1-step run s", f"{shapes[1]}-step run s", "per step ms", "x raw task"],
        [
            (
                name,
                r["run_seconds_median"][str(shapes[0])],
                r["run_seconds_median"][str(shapes[1])],
                round(r["per_step_seconds"] * 1000, 2),
                round(r["per_step_seconds"] / raw_step, 2) if raw_step > 0 else None,
            )
            for name, r in result.items()
        ],
    )
    targets = [check("engine step / raw Prefect task", ratio, "<=", 1.3, "x")]
    print_targets(targets)
    write_report(
        "step_overhead",
        {
            "machine": machine,
            "settings": {
                "extra_steps": k,
                "reps": args.reps,
                "warmup": args.warmup,
                "where": "in-process flow calls in one process, heartbeat thread off",
                "step": "json_transform returning its input / a no-op Prefect task",
                "prefect_server_database": "PostgreSQL (scratch database)",
            },
            "engine": result["engine"],
            "baselines": {"raw_submit": result["raw_submit"], "raw_direct": result["raw_direct"]},
            "ratio_engine_over_raw_submit": ratio,
            "ratio_engine_over_raw_direct": ratio_direct,
            "engine_jobs_not_completed": len(failures),
            "targets": targets,
            "all_met": all(t["met"] for t in targets),
        },
        args.report,
    )
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
