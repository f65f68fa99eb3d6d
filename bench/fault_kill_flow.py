"""Fault: kill -9 of the process running a flow, in the middle of a step.

Each trial posts jobs of a three-step workflow (`fetch` calls a counting endpoint, `wait`
sleeps, `notify` calls the endpoint again) through the REST API. Once a job's `wait` step has
started, the flow-run process the Prefect process worker started for it gets SIGKILL. The
worker reports the run Crashed; maintenance passes (run here every second, as the schedule
would) resubmit the job, and the new flow run resumes at `wait`.

Property, per trial: every job completes, and no step that had finished before the kill ran
again (neither by the job's events nor by calls to the counting endpoint).

    .venv/bin/python bench/fault_kill_flow.py --trials 3
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

NAME = "fault_kill_flow"
WORKFLOW = "bench_fault_kill"


def main(argv: list[str] | None = None) -> int:
    """Run the trials; exit status 0 when the property held in every one."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    fault_arguments(parser)
    parser.add_argument("--jobs", type=int, default=1, help="jobs killed per trial")
    parser.add_argument("--delay", type=float, default=3.0, help="seconds of the `wait` step")
    args = parser.parse_args(argv)

    with (
        CountingServer() as counter,
        LocalStack(NAME, env=FAST_RECOVERY_ENV, keep=args.keep) as stack,
    ):
        install_counting_workflow(stack, WORKFLOW, counter.url, delay_seconds=args.delay)

        def trial(number: int) -> TrialResult:
            result = TrialResult(trial=number)
            job_ids = [stack.post_job(WORKFLOW, {"trial": number}) for _ in range(args.jobs)]
            for job_id in job_ids:
                stack.wait_event(job_id, "step_started", "wait", timeout=90)
                flow_run_id = stack.jobs([job_id])[job_id]["flow_run_id"]
                pid = stack.kill_flow_run(flow_run_id)
                result.notes.append(f"job {job_id[:8]}: killed pid {pid} in step 'wait'")
            stack.wait_settled(job_ids, timeout=args.timeout, maintenance_every=1.0)
            result.tally(stack, counter, job_ids)
            result.ok = result.completed == result.posted and result.rerun_steps == 0
            return result

        return run_trials(
            NAME,
            "kill -9 of the flow-run process mid-step",
            args.trials,
            trial,
            args.report,
            jobs_per_trial=args.jobs,
            delay_seconds=args.delay,
            settings=FAST_RECOVERY_ENV,
        )


if __name__ == "__main__":
    sys.exit(main())
