"""The `run_workflow(job_id)` flow: one Prefect flow run per job, one task run per step.

State sync: every transition is written to the job row (and `job_events`) at the moment
Prefect makes it:
- a step's task run enters Running/Retrying -> job `running` (written by the task body);
- Prefect decides to retry -> job `awaiting_retry` with `next_retry_at` (written by the
  task's `retry_condition_fn`, the hook Prefect calls right before it sets AwaitingRetry;
  the delay is the exact value from the list handed to Prefect, so the time matches);
- the flow finishes -> `completed` with final_result, or `failed` naming step, transformer
  and error kind (written before the flow run itself ends).
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from prefect import Flow, flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import FlowRun, State, TaskRun
from prefect.futures import PrefectFuture
from prefect.runtime import flow_run as flow_run_runtime
from prefect.runtime import task_run as task_run_runtime

from engine.db.connection import shared_store
from engine.db.store import JobStore, Transition
from engine.definitions.mapping import render
from engine.definitions.plan import StepPlan, WorkflowPlan, build_plan, final_result, ready_steps
from engine.definitions.retry import classify_exception, should_retry
from engine.errors import DefinitionError, ErrorKind, MappingError, NotFoundError, StepError
from engine.jobs.transitions import TERMINAL, JobStatus
from engine.security.redaction import redact
from engine.settings import get_settings
from tasks import registry
from tasks.context import StepContext
from tasks.registry import get_executor


@dataclass(frozen=True)
class JobInfo:
    """The parts of a job row that steps see as `$.job` and that logs carry."""

    job_id: str
    workflow_id: str
    user_id: str | None
    created_at: str
    input_data: Any
    flow_run_id: str | None = None

    def as_context(self) -> dict[str, Any]:
        """The `job` object of the mapping context."""
        return {
            "id": self.job_id,
            "workflow_id": self.workflow_id,
            "user_id": self.user_id,
            "created_at": self.created_at,
        }


#: Last attempt number of each (job, step) run in this process, for the final error message.
_LAST_ATTEMPT: dict[tuple[str, str], int] = {}


class StepFailedError(Exception):
    """A step's final failure, with what the job's error_message must name."""

    def __init__(self, step: StepPlan, kind: ErrorKind, message: str, attempts: int) -> None:
        super().__init__(
            f"step '{step.step_id}' (transformer '{step.transformer_id}') failed after "
            f"{attempts} attempt{'s' if attempts != 1 else ''}: {kind.value}: {message}"
        )
        self.step = step
        self.kind = kind


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, StepError):
        return exc.message
    text = str(exc) or type(exc).__name__
    return text[:2000]


def _make_retry_condition(
    store: JobStore, job: JobInfo, step: StepPlan
) -> Callable[[Any, TaskRun, State[Any]], bool]:
    """The hook Prefect calls after a failed attempt that still has retries left."""

    def retry_condition(_task: Any, task_run: TaskRun, state: State[Any]) -> bool:
        exc = state.result(raise_on_failure=False)
        kind = classify_exception(exc) if isinstance(exc, BaseException) else ErrorKind.INTERNAL
        retries_done = max(task_run.run_count, 1) - 1
        if not should_retry(step.policy, kind, retries_done):
            return False
        # Prefect schedules the retry at now + delays[retries_done]; we handed it that list.
        delay = step.delays[min(retries_done, len(step.delays) - 1)] if step.delays else 0.0
        next_at = datetime.now(UTC) + timedelta(seconds=delay)
        store.transition(
            job.job_id,
            Transition(
                status=JobStatus.AWAITING_RETRY,
                step_id=step.step_id,
                attempt=retries_done + 1,
                retry_count=retries_done + 1,
                max_retries=step.policy.max_retries,
                next_retry_at=next_at,
                error_message=(
                    f"step '{step.step_id}' attempt {retries_done + 1} failed: "
                    f"{kind.value}: {_error_text(exc) if isinstance(exc, BaseException) else ''}"
                ),
                detail={"kind": kind.value, "delay_seconds": delay},
            ),
            flow_run_id=job.flow_run_id,
        )
        get_run_logger().warning(
            "job awaiting_retry: step '%s' retry in %.1f s",
            step.step_id,
            delay,
            extra={
                "job_id": job.job_id,
                "workflow_id": job.workflow_id,
                "step_id": step.step_id,
                "transformer_id": step.transformer_id,
                "attempt": retries_done + 1,
                "error_kind": kind.value,
                "status": "awaiting_retry",
            },
        )
        return True

    return retry_condition


@task(cache_policy=NO_CACHE, persist_result=False)
def run_step(job: JobInfo, step: StepPlan, steps_done: dict[str, Any], log_io: bool = False) -> Any:
    """One attempt of one step: map its input, run its executor, store its output."""
    store = shared_store()
    logger = get_run_logger()
    attempt = int(task_run_runtime.run_count or 1)
    log_ctx = {
        "job_id": job.job_id,
        "workflow_id": job.workflow_id,
        "step_id": step.step_id,
        "transformer_id": step.transformer_id,
        "attempt": attempt,
    }
    _LAST_ATTEMPT[(job.job_id, step.step_id)] = attempt
    if not store.transition(
        job.job_id,
        Transition(status=JobStatus.RUNNING, step_id=step.step_id, attempt=attempt),
        flow_run_id=job.flow_run_id,
    ):
        # The job finished or a resubmitted flow run took it over: this run must stop.
        raise StepError(
            ErrorKind.INTERNAL,
            "the job is no longer owned by this flow run (finished or resubmitted)",
        )
    store.add_event(
        job.job_id,
        "step_started",
        step_id=step.step_id,
        attempt=attempt,
        detail={"transformer_id": step.transformer_id},
    )
    logger.info("step started", extra=log_ctx)
    started = time.perf_counter()
    try:
        context = {"input": job.input_data, "steps": steps_done, "job": job.as_context()}
        try:
            step_input = render(step.input_template, context, where=f"step '{step.step_id}'")
        except MappingError as exc:
            raise StepError(ErrorKind.MAPPING, exc.message) from exc
        executor = get_executor(step.target_function)
        ctx = StepContext(
            job_id=job.job_id,
            workflow_id=job.workflow_id,
            step_id=step.step_id,
            transformer_id=step.transformer_id,
            attempt=attempt,
            user_id=job.user_id,
            settings=get_settings(),
        )
        if log_io:
            logger.info(
                "step input: %s", json.dumps(redact(step_input), default=str), extra=log_ctx
            )
        output = executor(step.config, step_input, ctx)
    except BaseException as exc:
        duration_ms = round((time.perf_counter() - started) * 1000, 1)
        kind = classify_exception(exc)
        store.add_event(
            job.job_id,
            "step_failed",
            step_id=step.step_id,
            attempt=attempt,
            detail={
                "transformer_id": step.transformer_id,
                "kind": kind.value,
                "error": _error_text(exc),
                "duration_ms": duration_ms,
            },
        )
        logger.warning(
            "step failed: %s: %s",
            kind.value,
            _error_text(exc),
            extra={**log_ctx, "error_kind": kind.value, "duration_ms": duration_ms},
        )
        raise
    duration_ms = round((time.perf_counter() - started) * 1000, 1)
    store.save_step_output(
        job.job_id,
        step.step_id,
        output,
        attempt=attempt,
        detail={"transformer_id": step.transformer_id, "duration_ms": duration_ms},
    )
    logger.info("step succeeded", extra={**log_ctx, "duration_ms": duration_ms})
    if log_io:
        logger.info("step output: %s", json.dumps(redact(output), default=str), extra=log_ctx)
    return output


def _submit(
    job: JobInfo, step: StepPlan, steps_done: dict[str, Any], log_io: bool
) -> PrefectFuture[Any]:
    store = shared_store()
    configured = run_step.with_options(
        name=step.step_id,
        task_run_name=step.step_id,
        retries=step.policy.max_retries,
        # Jitter is already applied in these delays, so Prefect's own jitter stays off and
        # next_retry_at is exact.
        retry_delay_seconds=list(step.delays) or 0,
        retry_jitter_factor=0.0,
        timeout_seconds=step.timeout_seconds,
        retry_condition_fn=_make_retry_condition(store, job, step),
    )
    return configured.submit(job, step, dict(steps_done), log_io)


def _notify(finished: queue.Queue[str], step_id: str) -> Callable[[PrefectFuture[Any]], None]:
    def done(_future: PrefectFuture[Any]) -> None:
        finished.put(step_id)

    return done


def _execute(job: JobInfo, plan: WorkflowPlan, steps_done: dict[str, Any]) -> None:
    """Run every unfinished step, each as soon as its dependencies are done.

    After the first final failure no new step starts; running ones finish first.
    """
    finished: queue.Queue[str] = queue.Queue()
    running: dict[str, PrefectFuture[Any]] = {}
    started: set[str] = set()
    failure: StepFailedError | None = None
    while True:
        if failure is None:
            for step_id in ready_steps(plan, steps_done.keys(), started):
                future = _submit(job, plan.steps[step_id], steps_done, plan.definition.log_step_io)
                future.add_done_callback(_notify(finished, step_id))
                running[step_id] = future
                started.add(step_id)
        if not running:
            break
        step_id = finished.get()
        future = running.pop(step_id)
        future.wait()
        state = future.state
        # Popped in every case: a warm worker lives long, the table must not grow.
        attempts = _LAST_ATTEMPT.pop((job.job_id, step_id), 1)
        if state.is_completed():
            steps_done[step_id] = future.result()
            continue
        exc = state.result(raise_on_failure=False)
        step = plan.steps[step_id]
        if failure is None:
            if isinstance(exc, BaseException):
                failure = StepFailedError(
                    step, classify_exception(exc), _error_text(exc), attempts=attempts
                )
            else:
                failure = StepFailedError(
                    step, ErrorKind.INTERNAL, state.message or state.name or "failed", 1
                )
    if failure is not None:
        raise failure


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


def _load(store: JobStore, job_id: str) -> tuple[JobInfo, dict[str, Any], Any]:
    bundle = store.load_run_bundle(job_id)
    row = bundle.job
    job = JobInfo(
        job_id=str(row["id"]),
        workflow_id=str(row["workflow_id"]),
        user_id=str(row["user_id"]) if row["user_id"] else None,
        created_at=row["created_at"].isoformat(),
        input_data=row["input_data"],
        flow_run_id=str(flow_run_runtime.id) if flow_run_runtime.id else None,
    )
    return job, row, bundle


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
    on_cancellation=[_mark_cancelled],
)
def run_workflow(job_id: str) -> Any:
    """Execute one job: resume at its first unfinished step and sync every transition."""
    store = shared_store()
    logger = get_run_logger()
    try:
        job, row, bundle = _load(store, job_id)
    except NotFoundError:
        logger.error("job not found", extra={"job_id": job_id})
        raise
    log_ctx = {"job_id": job.job_id, "workflow_id": job.workflow_id}
    if JobStatus(row["status"]) in TERMINAL or (
        job.flow_run_id is not None and not store.claim(job.job_id, job.flow_run_id)
    ):
        logger.info("job already %s; nothing to do", row["status"], extra=log_ctx)
        return None
    try:
        plan = build_plan(
            job.workflow_id,
            bundle.definition,
            bundle.transformers,
            catalog=registry.CATALOG,
            job_max_retries=int(row["max_retries"] if row["max_retries"] is not None else 3),
        )
    except DefinitionError as exc:
        message = f"configuration lookup failed for workflow '{job.workflow_id}': " + "; ".join(
            f"{p.location}: {p.message}" for p in exc.problems
        )
        store.add_event(job.job_id, "config_error", detail={"problems": exc.details})
        store.transition(
            job.job_id,
            Transition(status=JobStatus.FAILED, error_message=message, detail={"kind": "config"}),
            flow_run_id=job.flow_run_id,
        )
        logger.error(message, extra=log_ctx)
        raise
    steps_done: dict[str, Any] = dict(row["step_data"] or {})
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
    logger.info("job running", extra={**log_ctx, "status": "running"})
    try:
        with _Heartbeat(store, job.job_id, get_settings().job_heartbeat_seconds):
            _execute(job, plan, steps_done)
        context = {"input": job.input_data, "steps": steps_done, "job": job.as_context()}
        try:
            result = final_result(plan, context)
        except MappingError as exc:
            raise StepFailedError(
                plan.steps[plan.order[-1]], ErrorKind.MAPPING, exc.message, attempts=1
            ) from exc
    except StepFailedError as failed:
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
                **log_ctx,
                "step_id": failed.step.step_id,
                "transformer_id": failed.step.transformer_id,
                "error_kind": failed.kind.value,
                "status": "failed",
            },
        )
        raise
    store.transition(
        job.job_id,
        Transition(status=JobStatus.COMPLETED, final_result=result),
        flow_run_id=job.flow_run_id,
    )
    logger.info("job completed", extra={**log_ctx, "status": "completed"})
    return result
