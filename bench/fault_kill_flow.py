"""Fault: kill -9 of the process running the flows, in the middle of a step.

Each trial posts --jobs jobs of the counting workflow (bench/fault_workload.py) and waits until
every one is in its `wait` step. On the warm worker (the default) that process is the warm
worker itself, running them all: one SIGKILL takes every run down at once. The supervisor
restarts the worker, which marks the runs it finds orphaned Crashed; maintenance resubmits the
jobs and the new flow runs resume at `wait`. With --worker process each job's own flow-run
process is killed, and the process worker reports the run Crashed. Property, per trial: every
job completes, once, and no step that had finished before the kill runs again (the
interrupted `wait` steps run again, and are counted).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if not __package__:  # run as a file: import `bench` from the project root
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from bench.faults import FaultBench, FaultScript, TrialResult
from cli.scratch import kill_flow_run, kill_service


def trial(bench: FaultBench, number: int, args: argparse.Namespace) -> TrialResult:
    """Kill the process running the jobs' `wait` steps; all complete, nothing finished
    re-runs."""
    result = TrialResult(number)
    job_ids = bench.post_mid_step(args.jobs, number)
    in_step = sum(not _waited(bench, j) for j in job_ids)
    bench.fault()
    if bench.worker == "warm":
        pid = kill_service(bench.stack, "warm-worker")
        result.notes.append(f"killed the warm worker (pid {pid}) with {in_step} jobs in 'wait'")
    else:
        for job_id in job_ids:
            pid = kill_flow_run(bench.stack, str(bench.job(job_id)["prefect_flow_run_id"]))
            result.notes.append(f"job {job_id[:8]}: killed pid {pid} in step 'wait'")
    result.extra = {"jobs_mid_step_at_kill": in_step}
    bench.settle(result, job_ids, args.timeout)
    result.ok = result.held()
    return result


def _waited(bench: FaultBench, job_id: str) -> bool:
    """Whether the job's `wait` step has already finished."""
    events = bench.job_events(job_id)
    return any(e["kind"] == "step_succeeded" and e["step_id"] == "wait" for e in events)


TITLE = "kill -9 of the process running the flows, mid-step"
OPTIONS = [
    ("--jobs", 10, "jobs in flight per trial", "jobs_per_trial"),
    ("--delay", 6.0, "seconds of `wait`", "delay_seconds"),
]
main = FaultScript("fault_kill_flow", TITLE, __doc__, trial, OPTIONS)

if __name__ == "__main__":
    sys.exit(main())
