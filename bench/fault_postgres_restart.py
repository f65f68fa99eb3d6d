"""Fault: PostgreSQL restarted mid-run.

Each trial posts jobs of the counting workflow (bench/faults.py) and, once every one is in its
`wait` step, stops the embedded PostgreSQL (fast shutdown: every session is cut, pooled ones
included: the engine's and, on the default path, the Prefect server's, whose database is in
the same server) and starts it again after a pause; maintenance resubmits whatever stopped.
Property, per trial: no job is stuck (every one ends completed or failed), none ran twice,
and no finished step ran again.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

if not __package__:  # run as a file: import `bench` from the project root
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from bench.faults import FAST_RECOVERY_ENV, FaultBench, FaultScript, TrialResult


def trial(bench: FaultBench, number: int, args: argparse.Namespace) -> TrialResult:
    """Restart PostgreSQL while every job is in its `wait` step; none may end up stuck."""
    result, embedded = TrialResult(number), bench.stack.embedded
    job_ids = bench.post_mid_step(args.jobs, number)
    assert embedded is not None
    started = bench.fault()
    embedded.stop()
    time.sleep(args.downtime)
    embedded.start()
    result.extra = {"postgres_down_seconds": round(time.monotonic() - started, 1)}
    bench.settle(result, job_ids, args.timeout)
    c = result.counts
    result.ok = c["stuck"] == c["duplicated"] == c["rerun_finished"] == 0
    return result


def settings(args: argparse.Namespace) -> dict[str, str]:
    """Fast recovery, with the heartbeat of --heartbeat and a window of six beats."""
    beat = {"JOB_HEARTBEAT_SECONDS": str(args.heartbeat)}
    return {**FAST_RECOVERY_ENV, **beat, "HEARTBEAT_WINDOW_SECONDS": str(6 * args.heartbeat)}


OPTIONS = [
    ("--jobs", 3, "jobs running during the restart", "jobs_per_trial"),
    ("--downtime", 2.0, "seconds PostgreSQL is down", "downtime_seconds"),
    ("--delay", 4.0, "seconds of the `wait` step", "delay_seconds"),
    # A slow beat leaves stale pooled connections for the steps to find (a fast one uses
    # them up first).
    ("--heartbeat", 3.0, "JOB_HEARTBEAT_SECONDS; the window is 6 beats"),
]
TITLE = "PostgreSQL restarted mid-run"
main = FaultScript("fault_postgres_restart", TITLE, __doc__, trial, OPTIONS, settings)

if __name__ == "__main__":
    sys.exit(main())
