"""Fault: the Prefect server crashes (kill -9 of it and every process it started) while jobs
run, and the stack's supervisor restarts it.

Each trial posts --jobs jobs of the counting workflow and, once every one is in its `wait`
step, kills the Prefect server's process group. The warm worker keeps running its flows
while the server is gone (Prefect's client retries its calls) or loses them (maintenance
resubmits the jobs once the server is back). Property, per trial: every job completes once,
and no finished step runs again.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

if not __package__:  # run as a file: import `bench` from the project root
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from bench.faults import FaultBench, FaultScript, TrialResult
from cli.scratch import kill_service


def trial(bench: FaultBench, number: int, args: argparse.Namespace) -> TrialResult:
    """Crash Prefect while every job is mid-step; all complete, once."""
    result = TrialResult(number)
    job_ids = bench.post_mid_step(args.jobs, number)
    kill_service(bench.stack, "prefect-server", group=True)
    down_at = bench.fault()
    deadline = down_at + 120
    while not bench.stack.services["prefect-server"].alive():
        if time.monotonic() > deadline:
            raise RuntimeError("the supervisor did not restart the Prefect server")
        bench.heal()
        time.sleep(0.1)
    bench.stack.wait_prefect(timeout=120)
    result.extra = {"prefect_down_seconds": round(time.monotonic() - down_at, 1)}
    bench.settle(result, job_ids, args.timeout)
    result.ok = result.held()
    return result


TITLE = "Prefect server crashed (kill -9) and restarted, jobs mid-step"
OPTIONS = [
    ("--jobs", 10, "jobs in flight per trial", "jobs_per_trial"),
    ("--delay", 6.0, "seconds of `wait`", "delay_seconds"),
]
main = FaultScript("fault_prefect_restart", TITLE, __doc__, trial, OPTIONS)

if __name__ == "__main__":
    sys.exit(main())
