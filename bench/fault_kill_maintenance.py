"""Fault: kill -9 of maintenance in the middle of a pass.

Each trial posts --jobs jobs of the counting workflow and, once every one is in its `wait`
step, kills the warm worker; the supervisor restarts it and it marks their runs Crashed. Then
one maintenance pass starts, and it is killed with SIGKILL as soon as it has created the first
of the new flow runs in Prefect (seen in Prefect's database) and before it has created them
all: Prefect then holds runs whose resubmission the engine never recorded. The next passes
(every second, as the schedule would run them) must finish the work without running any job
twice. Property, per trial: every job completes once, and no finished step runs again. A trial
whose pass finished before the kill says so (`mid_pass: false`).
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path
from typing import Any

if not __package__:  # run as a file: import `bench` from the project root
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from bench.faults import FaultBench, FaultScript, TrialResult
from bench.report import connect, sql
from cli.scratch import kill_service, start_maintenance


def _wait_crashed(bench: FaultBench, job_ids: list[str], timeout: float) -> None:
    """Heal until every job has its `flow_run_crashed` event (the restarted warm worker
    found its run orphaned)."""
    deadline = time.monotonic() + timeout
    while not all(
        any(e["kind"] == "flow_run_crashed" for e in bench.job_events(j)) for j in job_ids
    ):
        if time.monotonic() > deadline:
            raise RuntimeError("the restarted warm worker did not mark the runs Crashed")
        bench.heal()
        time.sleep(0.2)


def _kill_mid_pass(bench: FaultBench, job_ids: list[str], timeout: float) -> dict[str, Any]:
    """Start a maintenance pass and SIGKILL it once it created its first new flow run."""
    deadline, statement = time.monotonic() + timeout, sql("flow_runs_per_job")
    with connect(bench.stack.prefect_database_url) as conn:
        proc = start_maintenance(bench.stack)
        while True:
            runs = conn.execute(statement, [job_ids]).fetchall()
            created = sum(int(r["n"]) - 1 for r in runs)
            if created > 0 or proc.poll() is not None or time.monotonic() > deadline:
                break
            time.sleep(0.002)
        finished = proc.poll() is not None
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    bench.fault()
    return {"new_runs_at_kill": created, "mid_pass": not finished and created < len(job_ids)}


def trial(bench: FaultBench, number: int, args: argparse.Namespace) -> TrialResult:
    """Kill maintenance mid-pass while it resubmits crashed jobs; all complete, once."""
    result = TrialResult(number)
    job_ids = bench.post_mid_step(args.jobs, number)
    kill_service(bench.stack, "warm-worker")
    _wait_crashed(bench, job_ids, timeout=60)
    result.extra = _kill_mid_pass(bench, job_ids, timeout=60)
    bench.settle(result, job_ids, args.timeout)
    result.ok = result.held()
    return result


TITLE = "kill -9 of maintenance mid-pass"
OPTIONS = [
    ("--jobs", 10, "crashed jobs the pass resubmits", "jobs_per_trial"),
    ("--delay", 6.0, "seconds of `wait`", "delay_seconds"),
]
main = FaultScript("fault_kill_maintenance", TITLE, __doc__, trial, OPTIONS)

if __name__ == "__main__":
    sys.exit(main())
