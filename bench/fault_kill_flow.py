"""Fault: kill -9 of the process running a flow, in the middle of a step.

Each trial posts jobs of the counting workflow (bench/faults.py). Once a job's `wait` step has
started, its flow-run process gets SIGKILL: the process worker reports the run Crashed,
maintenance resubmits the job and the new flow run resumes at `wait`. Property, per trial:
every job completes, and no step that had finished before the kill runs again.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if not __package__:  # run as a file: import `bench` from the project root
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from bench.faults import FaultBench, FaultScript, TrialResult
from cli.scratch import kill_flow_run


def trial(bench: FaultBench, number: int, args: argparse.Namespace) -> TrialResult:
    """Kill each job's flow-run process in its `wait` step; all complete, nothing re-runs."""
    result = TrialResult(number)
    job_ids = [bench.post_job({"trial": number}) for _ in range(args.jobs)]
    for job_id in job_ids:
        bench.wait_event(job_id, "step_started", "wait")
        pid = kill_flow_run(bench.stack, str(bench.job(job_id)["prefect_flow_run_id"]))
        result.notes.append(f"job {job_id[:8]}: killed pid {pid} in step 'wait'")
    bench.settle(result, job_ids, args.timeout)
    counts = result.counts
    result.ok = counts["completed"] == counts["posted"] and counts["rerun_steps"] == 0
    return result


TITLE = "kill -9 of the flow-run process mid-step"
OPTIONS = [
    ("--jobs", 1, "jobs killed per trial", "jobs_per_trial"),
    ("--delay", 3.0, "seconds of `wait`", "delay_seconds"),
]
main = FaultScript("fault_kill_flow", TITLE, __doc__, trial, OPTIONS)

if __name__ == "__main__":
    sys.exit(main())
