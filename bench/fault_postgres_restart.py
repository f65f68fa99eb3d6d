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

from harness import (
    FAST_RECOVERY_ENV,
    CountingServer,
    LocalStack,
    TrialResult,
    fault_arguments,
    install_counting_workflow,
    run_trials,
)

NAME = "fault_postgres_restart"
WORKFLOW = "bench_fault_postgres"


def main(argv: list[str] | None = None) -> int:
    """Run the trials; exit status 0 when the property held in every one."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    fault_arguments(parser)
    parser.add_argument("--jobs", type=int, default=3, help="jobs running during the restart")
    parser.add_argument("--downtime", type=float, default=2.0, help="seconds PostgreSQL is down")
    parser.add_argument("--delay", type=float, default=4.0, help="seconds of the `wait` step")
    parser.add_argument(
        "--heartbeat",
        type=float,
        default=3.0,
        help="JOB_HEARTBEAT_SECONDS; the window is 6 beats. A slow beat leaves stale pooled"
        " connections for the steps to find (a fast one uses them up first)",
    )
    args = parser.parse_args(argv)
    settings = {
        **FAST_RECOVERY_ENV,
        "JOB_HEARTBEAT_SECONDS": str(args.heartbeat),
        "HEARTBEAT_WINDOW_SECONDS": str(6 * args.heartbeat),
    }

    with CountingServer() as counter, LocalStack(NAME, env=settings, keep=args.keep) as stack:
        install_counting_workflow(stack, WORKFLOW, counter.url, delay_seconds=args.delay)

        def trial(number: int) -> TrialResult:
            result = TrialResult(trial=number)
            job_ids = [stack.post_job(WORKFLOW, {"trial": number}) for _ in range(args.jobs)]
            for job_id in job_ids:
                stack.wait_event(job_id, "step_started", "wait", timeout=90)
            down = stack.restart_postgres(args.downtime)
            stack.wait_settled(job_ids, timeout=args.timeout, maintenance_every=1.0)
            result.tally(stack, counter, job_ids)
            result.extra = {"postgres_down_seconds": round(down, 1)}
            result.ok = result.stuck == 0
            return result

        return run_trials(
            NAME,
            "PostgreSQL restarted mid-run",
            args.trials,
            trial,
            args.report,
            jobs_per_trial=args.jobs,
            downtime_seconds=args.downtime,
            delay_seconds=args.delay,
            settings=settings,
        )


if __name__ == "__main__":
    sys.exit(main())
