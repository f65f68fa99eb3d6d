"""Fault: PostgreSQL restarted mid-run.

Each trial posts jobs of a three-step workflow (`fetch` calls a counting endpoint, `wait`
sleeps, `notify` calls the endpoint again) and waits until every one is in the middle of its
`wait` step. Then the embedded PostgreSQL server is stopped (fast shutdown: every open session
is cut, the flow runs' pooled connections included) and started again after a pause. The flow
runs carry on with broken pooled connections; maintenance passes (run here every second, as
the schedule would) resubmit whatever stopped.

Property, per trial: no job is stuck, that is every job ends completed or failed. Failed jobs
and re-run steps are counted too.

    .venv/bin/python bench/fault_postgres_restart.py --trials 3
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

if not __package__:  # run as a file: import `bench` from the project root
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from bench.faults import FaultBench, FaultScript, TrialResult, fault_main
from bench.stacks import FAST_RECOVERY_ENV


def trial(bench: FaultBench, number: int, args: argparse.Namespace) -> TrialResult:
    """Restart PostgreSQL while every job is in its `wait` step; none may end up stuck."""
    result = TrialResult(trial=number)
    job_ids = [bench.post_job({"trial": number}) for _ in range(args.jobs)]
    for job_id in job_ids:
        bench.wait_event(job_id, "step_started", "wait")
    assert bench.stack.embedded is not None
    started = time.monotonic()
    bench.stack.embedded.stop()
    time.sleep(args.downtime)
    bench.stack.embedded.start()
    result.extra = {"postgres_down_seconds": round(time.monotonic() - started, 1)}
    bench.wait_settled(job_ids, args.timeout)
    bench.tally(result, job_ids)
    result.ok = result.stuck == 0
    return result


def settings(args: argparse.Namespace) -> dict[str, str]:
    """Fast recovery, with the heartbeat of --heartbeat and a window of six beats."""
    beat = args.heartbeat
    window = {"JOB_HEARTBEAT_SECONDS": str(beat), "HEARTBEAT_WINDOW_SECONDS": str(6 * beat)}
    return {**FAST_RECOVERY_ENV, **window}


SCRIPT = FaultScript(
    "fault_postgres_restart",
    "PostgreSQL restarted mid-run",
    "bench_fault_postgres",
    (
        ("--jobs", 3, "jobs running during the restart"),
        ("--downtime", 2.0, "seconds PostgreSQL is down"),
        ("--delay", 4.0, "seconds of the `wait` step"),
        (
            "--heartbeat",
            3.0,
            "JOB_HEARTBEAT_SECONDS; the window is 6 beats. A slow beat leaves stale pooled"
            " connections for the steps to find (a fast one uses them up first)",
        ),
    ),
    {"jobs": "jobs_per_trial", "downtime": "downtime_seconds", "delay": "delay_seconds"},
    trial,
    settings,
)


def main(argv: list[str] | None = None) -> int:
    """Run the trials; exit status 0 when the property held in every one."""
    return fault_main(SCRIPT, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
