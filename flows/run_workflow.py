"""The `run_workflow(job_id)` flow: one Prefect flow run per job, one task run per step.

State sync: every transition is written to the job row (and `job_events`) at the moment
Prefect makes it. The steps' own transitions (running, awaiting_retry, outputs) are written
by the step task (flows.run_step); the flow writes the job's: `running` when it starts or
resumes, then `completed` with final_result, or `failed` naming step, transformer and error
kind (written before the flow run itself ends).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from prefect import Flow, flow, get_run_logger
from prefect.client.schemas.objects import FlowRun, State
from prefect.futures import PrefectFuture
from prefect.runtime import flow_run as flow_run_runtime
from prefect.states import AwaitingRetry

from engine.db.connection import shared_store
from engine.db.job_writes import Transition
from engine.db.rows import RunBundle
from engine.db.store import JobStore
from engine.definitions.plan import WorkflowPlan, build_plan, final_result, ready_steps
from engine.definitions.retry import classify_exception
from engine.errors import DefinitionError, ErrorKind, MappingError, NotFoundError
from engine.jobs.transitions import TERMINAL, JobStatus
from engine.settings import get_settings
from flows import fan_out, sub_workflows, waiting
from flows.callbacks import deliver_for_job, on_job_finished
from flows.job_control import JobCancelled, finish_cancelled, finished_state
from flows.job_deadlines import BoundaryWatch, JobTimedOut
from flows.run_step import (
    JobInfo,
    RetryRescheduled,
    StepFailedError,
    error_text,
    pop_last_attempt,
    pop_rescheduled,
    submit_step,
)
from flows.skipping import Skips
from tasks import registry

#: Logger of the flow run (Prefect's run logger or an adapter of it).
RunLogger = logging.Logger | logging.LoggerAdapter[logging.Logger]


def _notify(finished: queue.Queue[str], step_id: str) -> Callable[[PrefectFuture[Any]], None]:
    def done(_future: PrefectFuture[Any]) -> None:
        finished.put(step_id)

    return done


def _start(
    job: JobInfo,
    plan: WorkflowPlan,
    step_id: str,
    steps_done: dict[str, Any],
    first_attempts: dict[str, int],
    parked: list[waiting.Parked],
    skips: Skips,
) -> PrefectFuture[Any] | None:
    """Submit a ready step; a wait step parks (None) or records its decided output."""
    if (decided := skips.start(job, step_id, steps_done)) is not None:  # skipped, or a switch
        return decided
    if step_id in plan.waits and sub_workflows.is_call(plan.waits[step_id]):
        return sub_workflows.start(job, plan.waits[step_id], steps_done, parked)  # a child job
    if step_id in plan.waits:
        return waiting.start(job, plan.waits[step_id], steps_done, parked)
    if (fan := fan_out.fan_out_of(plan, step_id)) is not None:  # for_each: one run per item
        return fan_out.submit_fan_out(
            job, plan.steps[step_id], fan, steps_done, plan.definition.log_step_io
        )
    return submit_step(
        job,
        plan.steps[step_id],
        steps_done,
        plan.definition.log_step_io,
        first_attempts.get(step_id, 1),
    )


def _execute(
    job: JobInfo, plan: WorkflowPlan, steps_done: dict[str, Any], first_attempts: dict[str, int]
) -> None:
    """Run every unfinished step, each as soon as its dependencies are done.

    After the first final failure or rescheduled retry no new step starts; running ones
    finish first. Then StepFailedError, or RetryRescheduled for the latest retry time (no
    step retries before its own time). Wait steps park (flows/waiting.py) while the others
    go on; then WaitsParked. A cancel requested by the job's owner stops it the
    same way at the next step boundary, and wins: JobCancelled (flows/job_control.py).
    Past the job's deadline likewise, then JobTimedOut (flows/job_deadlines.py).
    """
    finished: queue.Queue[str] = queue.Queue()
    running: dict[str, PrefectFuture[Any]] = {}
    started: set[str] = set()
    failure: StepFailedError | None = None
    later: RetryRescheduled | None = None
    parked: list[waiting.Parked] = []
    cancel = BoundaryWatch(shared_store(), job.job_id)  # owner's cancel, job's deadline
    skips = Skips(job, plan)  # steps skipped by a condition or a branch
    while True:
        if failure is None and later is None and not cancel.check():
            for step_id in ready_steps(plan, skips.done(steps_done), started):
                started.add(step_id)
                future = _start(job, plan, step_id, steps_done, first_attempts, parked, skips)
                if future is not None:  # None: a wait step the job now waits at
                    future.add_done_callback(_notify(finished, step_id))
                    running[step_id] = future
        if not running:
            break
        step_id = finished.get()
        future = running.pop(step_id)
        future.wait()
        state = future.state
        attempts = pop_last_attempt(job.job_id, step_id)  # in every case: forget it
        if state.is_completed():
            skips.keep_output(step_id, future, steps_done)  # none for a skipped step
            continue
        if (at := pop_rescheduled(job.job_id, step_id)) is not None:
            if later is None or at > later.at:
                later = RetryRescheduled(step_id, at)
            continue
        exc = state.result(raise_on_failure=False)
        step = skips.step_plan(step_id)  # any kind of step, in the shape errors name
        if failure is None:
            if isinstance(exc, BaseException):
                failure = StepFailedError(
                    step, classify_exception(exc), error_text(exc), attempts=attempts
                )
            else:
                failure = StepFailedError(
                    step, ErrorKind.INTERNAL, state.message or state.name or "failed", 1
                )
    cancel.raise_if_requested()  # JobCancelled (or JobTimedOut): outputs stored, none running
    if failure is not None:
        raise failure
    if parked:
        raise waiting.WaitsParked(parked, later)
    if later is not None:
        raise later


class _Heartbeat:
    """Marks the job alive every `interval` seconds while its flow run works on it.

    The maintenance flow resubmits a running job whose heartbeat stops (the process died
    without Prefect noticing); long steps and retry sleeps keep beating.
    """

    def __init__(self, store: JobStore, job_id: str, interval: float) -> None:
        self._store = store
        self._job_id = job_id
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{job_id}", daemon=True)

    def _beat(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._store.heartbeat(self._job_id)
            except Exception as exc:  # a missed beat is harmless; the next one retries
                logging.getLogger("supaflow.heartbeat").debug("heartbeat failed: %s", exc)

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()


def _load(store: JobStore, job_id: str) -> tuple[JobInfo, RunBundle]:
    bundle = store.load_run_bundle(job_id)
    flow_run_id = str(flow_run_runtime.id) if flow_run_runtime.id else None
    return JobInfo.from_row(bundle.job, flow_run_id), bundle


#: A delayed job's run that starts at most this early sleeps until its time; one earlier still
#: was started on purpose (a rerun) and goes on at once.
EARLY_START_SLACK_SECONDS = 2.0


def _wait_for_start(bundle: RunBundle) -> None:
    """A delayed job starts no step before its scheduled_for. Prefect holds its Scheduled
    run until then, but to the second only (it rounds the wait), so the rest is slept here."""
    ahead = bundle.starts_in_seconds
    if ahead is not None and 0 < ahead <= EARLY_START_SLACK_SECONDS:
        time.sleep(ahead)


def _fail_on_config_error(
    store: JobStore, job: JobInfo, exc: DefinitionError, logger: RunLogger
) -> None:
    """The job fails naming every problem of its definition or transformers."""
    message = f"configuration lookup failed for workflow '{job.workflow_id}': " + "; ".join(
        f"{p.location}: {p.message}" for p in exc.problems
    )
    store.add_event(job.job_id, "config_error", detail={"problems": exc.details})
    store.transition(
        job.job_id,
        Transition(status=JobStatus.FAILED, error_message=message, detail={"kind": "config"}),
        flow_run_id=job.flow_run_id,
    )
    logger.error(message, extra={"job_id": job.job_id, "workflow_id": job.workflow_id})


def _resume(store: JobStore, job: JobInfo, plan: WorkflowPlan, steps_done: dict[str, Any]) -> None:
    """Record the steps whose output is already stored (they are skipped) and mark the job
    running at its first unfinished step."""
    for step_id in plan.order:
        if step_id in steps_done:
            store.add_event(
                job.job_id,
                "step_skipped",
                step_id=step_id,
                detail={"reason": "output already in step_data"},
            )
    first = next((s for s in plan.order if s not in steps_done), None)
    store.transition(
        job.job_id, Transition(status=JobStatus.RUNNING, step_id=first), flow_run_id=job.flow_run_id
    )


def _run_to_result(store: JobStore, job: JobInfo, plan: WorkflowPlan, bundle: RunBundle) -> Any:
    """Run the unfinished steps (the job beating meanwhile) and map the final result.

    StepFailedError when a step fails for good or the output mapping does not resolve;
    RetryRescheduled when a step's retry waits past this flow run.
    """
    steps_done = dict(bundle.job.step_data)
    with _Heartbeat(store, job.job_id, get_settings().job_heartbeat_seconds):
        _execute(job, plan, steps_done, bundle.first_attempts)
    try:
        return final_result(plan, job.mapping_context(steps_done))
    except MappingError as exc:
        raise StepFailedError(
            plan.steps.get(plan.order[-1]) or waiting.as_step(plan.waits[plan.order[-1]]),
            ErrorKind.MAPPING,
            exc.message,
            attempts=1,
        ) from exc


def _fail_on_step(
    store: JobStore, job: JobInfo, failed: StepFailedError, logger: RunLogger
) -> None:
    """The job fails naming the step, its transformer and the error kind."""
    store.transition(
        job.job_id,
        Transition(
            status=JobStatus.FAILED,
            step_id=failed.step.step_id,
            error_message=str(failed),
            detail={"kind": failed.kind.value, "transformer_id": failed.step.transformer_id},
        ),
        flow_run_id=job.flow_run_id,
    )
    logger.error(
        str(failed),
        extra={
            "job_id": job.job_id,
            "workflow_id": job.workflow_id,
            "step_id": failed.step.step_id,
            "transformer_id": failed.step.transformer_id,
            "error_kind": failed.kind.value,
            "status": "failed",
        },
    )


def _mark_cancelled(flow: Flow[..., Any], flow_run: FlowRun, state: State[Any]) -> None:
    job_id = str(flow_run.parameters.get("job_id"))
    shared_store().transition(
        job_id,
        Transition(
            status=JobStatus.FAILED,
            error_message=f"flow run {flow_run.id} was cancelled: {state.message or ''}".strip(),
            detail={"kind": "cancelled"},
        ),
        flow_run_id=str(flow_run.id),
    )


@flow(
    name="run-workflow",
    flow_run_name="job-{job_id}",
    persist_result=False,
    on_cancellation=[_mark_cancelled, on_job_finished, sub_workflows.on_child_finished],
    # The job's on_finish callback goes out right after its terminal transition.
    on_completion=[on_job_finished, sub_workflows.on_child_finished],
    on_failure=[on_job_finished, sub_workflows.on_child_finished],
)
def run_workflow(job_id: str) -> Any:
    """Execute one job: resume at its first unfinished step and sync every transition."""
    store = shared_store()
    logger = get_run_logger()
    try:
        job, bundle = _load(store, job_id)
    except NotFoundError:
        logger.error("job not found", extra={"job_id": job_id})
        raise
    log_ctx = {"job_id": job.job_id, "workflow_id": job.workflow_id}
    if bundle.job.status in TERMINAL or (
        job.flow_run_id is not None and not store.claim(job.job_id, job.flow_run_id)
    ):
        logger.info("job already %s; nothing to do", bundle.job.status.value, extra=log_ctx)
        return finished_state(store, job.job_id)
    try:
        plan = build_plan(
            job.workflow_id,
            bundle.definition,
            bundle.transformers,
            catalog=registry.CATALOG,
            job_max_retries=bundle.job.max_retries,
        )
    except DefinitionError as exc:
        _fail_on_config_error(store, job, exc, logger)
        raise
    _wait_for_start(bundle)
    _resume(store, job, plan, bundle.job.step_data)
    logger.info("job running", extra={**log_ctx, "status": "running"})
    try:
        result = _run_to_result(store, job, plan, bundle)
    except StepFailedError as failed:
        _fail_on_step(store, job, failed, logger)
        raise
    except JobTimedOut as timed_out:  # the flow run ends Failed
        timed_out.fail_job(store, job.flow_run_id, logger)
        raise
    except JobCancelled as cancelled:
        done = sorted(store.get_job(job.job_id)["step_data"] or {})
        ended = finish_cancelled(store, job.job_id, job.flow_run_id, cancelled, done, logger)
        deliver_for_job(job.job_id, logger)  # a returned Cancelled state runs no flow hook
        return ended
    except waiting.WaitsParked as parked:  # the job row says waiting_for (flows/waiting.py)
        logger.info("flow run ends while %s", parked, extra={**log_ctx, "status": "running"})
        return waiting.end_state(parked)
    except RetryRescheduled as later:
        # The job row already says awaiting_retry with this next_retry_at (the retry hook).
        logger.info(
            "flow run rescheduled: %s", later, extra={**log_ctx, "status": "awaiting_retry"}
        )
        return AwaitingRetry(scheduled_time=later.at, message=str(later))
    store.transition(
        job.job_id,
        Transition(status=JobStatus.COMPLETED, final_result=result),
        flow_run_id=job.flow_run_id,
    )
    logger.info("job completed", extra={**log_ctx, "status": "completed"})
    return result
