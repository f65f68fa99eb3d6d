"""Fault: the Prefect server stopped while jobs are posted.

Each trial posts one job and waits until it is in its long step; then the Prefect server is
stopped (SIGINT), more jobs are posted through the API (it answers 201, the jobs stay
`pending`), and after a pause the server starts again on the same port and database.
Maintenance dispatches the pending jobs and recovers the running one if its flow run was lost.
Property, per trial: every job posted, before or during the outage, completes.
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

if not __package__:  # run as a file: import `bench` from the project root
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from bench.faults import FaultBench, FaultScript, TrialResult


def _timed_post(bench: FaultBench, number: int) -> tuple[str, float, float]:
    """POST a job; (job id, seconds the API took, monotonic time of the answer)."""
    started = time.monotonic()
    job_id = bench.post_job({"trial": number, "posted": "during"}, timeout=150)
    answered = time.monotonic()
    return job_id, answered - started, answered


def trial(bench: FaultBench, number: int, args: argparse.Namespace) -> TrialResult:
    """Stop Prefect while one job runs, post more, start it again; every job completes."""
    result = TrialResult(trial=number)
    before = bench.post_job({"trial": number, "posted": "before"})
    bench.wait_event(before, "step_started", "wait")
    bench.stack.stop("prefect-server")
    down_at = bench.fault()
    # Posted from threads: how long the API takes to answer while Prefect is down is
    # measured, not assumed; the server comes back after `downtime` either way.
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        posts = [pool.submit(_timed_post, bench, number) for _ in range(args.jobs)]
        time.sleep(max(0.0, args.downtime - (time.monotonic() - down_at)))
        bench.stack.start_prefect()
        bench.stack.wait_prefect(timeout=120)
        up_at = time.monotonic()
        answers = [p.result(timeout=180) for p in posts]
    during = [job_id for job_id, _, _ in answers]
    result.extra = {
        "prefect_down_seconds": round(up_at - down_at, 1),
        "posts_answered_while_down": sum(1 for _, _, at in answers if at < up_at),
        "post_seconds_max": round(max(seconds for _, seconds, _ in answers), 1),
        # No flow run yet when the API answered: only maintenance can dispatch these.
        "left_pending_by_api": sum(1 for j in during if not bench.job(j)["prefect_flow_run_id"]),
    }
    bench.settle(result, [before, *during], args.timeout)
    result.ok = result.held()
    return result


OPTIONS = [
    ("--jobs", 3, "jobs posted while Prefect is down", "jobs_posted_while_down"),
    ("--downtime", 3.0, "seconds Prefect stays down", "downtime_seconds"),
    ("--delay", 2.0, "seconds of the `wait` step", "delay_seconds"),
]
TITLE = "Prefect server stopped while jobs are posted"
main = FaultScript("fault_prefect_down", TITLE, __doc__, trial, OPTIONS)

if __name__ == "__main__":
    sys.exit(main())
