"""Fault: the Prefect server stopped while jobs are posted.

Each trial posts one job and waits until it is in the middle of its long step; then the
Prefect server is stopped (SIGINT, like Ctrl-C), more jobs are posted through the REST API
(it answers 201 and the jobs stay `pending`, since no flow run can be created), and after a
pause the server starts again on the same port and SQLite database. Maintenance passes (run
here every second, as the schedule would) dispatch the pending jobs and recover the one that
was running if its flow run was lost.

Property, per trial: every job posted, before or during the outage, completes.

    .venv/bin/python bench/fault_prefect_down.py --trials 3
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from harness import (
    FAST_RECOVERY_ENV,
    CountingServer,
    LocalStack,
    TrialResult,
    fault_arguments,
    install_counting_workflow,
    run_trials,
)

NAME = "fault_prefect_down"
WORKFLOW = "bench_fault_prefect"


def _timed_post(stack: LocalStack, input_data: dict[str, Any]) -> tuple[str, float, float]:
    """POST a job; returns (job id, seconds the API took, monotonic time of the answer)."""
    started = time.monotonic()
    job_id = stack.post_job(WORKFLOW, input_data, timeout=150)
    answered = time.monotonic()
    return job_id, answered - started, answered


def main(argv: list[str] | None = None) -> int:
    """Run the trials; exit status 0 when the property held in every one."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    fault_arguments(parser)
    parser.add_argument("--jobs", type=int, default=3, help="jobs posted while Prefect is down")
    parser.add_argument("--downtime", type=float, default=3.0, help="seconds Prefect stays down")
    parser.add_argument("--delay", type=float, default=2.0, help="seconds of the `wait` step")
    args = parser.parse_args(argv)

    with (
        CountingServer() as counter,
        LocalStack(NAME, env=FAST_RECOVERY_ENV, keep=args.keep) as stack,
    ):
        install_counting_workflow(stack, WORKFLOW, counter.url, delay_seconds=args.delay)

        def trial(number: int) -> TrialResult:
            result = TrialResult(trial=number)
            before = stack.post_job(WORKFLOW, {"trial": number, "posted": "before"})
            stack.wait_event(before, "step_started", "wait", timeout=90)
            stack.stop_prefect()
            down_at = time.monotonic()
            # Posted from threads: how long the API takes to answer while Prefect is down is
            # measured, not assumed; the server comes back after `downtime` either way.
            with ThreadPoolExecutor(max_workers=args.jobs) as pool:
                posts = [
                    pool.submit(_timed_post, stack, {"trial": number, "posted": "during"})
                    for _ in range(args.jobs)
                ]
                time.sleep(max(0.0, args.downtime - (time.monotonic() - down_at)))
                stack.start_prefect()
                up_at = time.monotonic()
                answers = [p.result(timeout=180) for p in posts]
            during = [job_id for job_id, _, _ in answers]
            result.extra = {
                "prefect_down_seconds": round(up_at - down_at, 1),
                "posts_answered_while_down": sum(1 for _, _, at in answers if at < up_at),
                "post_seconds_max": round(max(seconds for _, seconds, _ in answers), 1),
                # No flow run yet when the API answered: only maintenance can dispatch these.
                "left_pending_by_api": sum(
                    1 for row in stack.jobs(during).values() if row["flow_run_id"] is None
                ),
            }
            job_ids = [before, *during]
            stack.wait_settled(job_ids, timeout=args.timeout, maintenance_every=1.0)
            result.tally(stack, counter, job_ids)
            result.ok = result.completed == result.posted
            return result

        return run_trials(
            NAME,
            "Prefect server stopped while jobs are posted",
            args.trials,
            trial,
            args.report,
            jobs_posted_while_down=args.jobs,
            downtime_seconds=args.downtime,
            delay_seconds=args.delay,
            settings=FAST_RECOVERY_ENV,
        )


if __name__ == "__main__":
    sys.exit(main())
