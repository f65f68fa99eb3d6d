"""The step task of `run_workflow`: one Prefect task run per step, one call per attempt.

State sync for a step, written at the moment Prefect makes the change:
- an attempt starts (Running or Retrying) -> job `running` on that step (the task body);
- Prefect decides to retry -> job `awaiting_retry` with `next_retry_at` (the task's
  `retry_condition_fn`, the hook Prefect calls right before it sets AwaitingRetry; the delay
  is the exact value from the list handed to Prefect, so the time matches);
- a retry delay above RETRY_RESCHEDULE_SECONDS is not slept in the flow run: the hook records
  the same `awaiting_retry`, declines Prefect's in-process retry and notes the step as
  rescheduled (`pop_rescheduled`); the flow then ends AwaitingRetry, scheduled for
  `next_retry_at`, and the next run of the same flow run resumes the step at its next attempt
  (`first_attempt`), holding no worker slot meanwhile;
- the attempt succeeds -> its output merged into `step_data`.

The step's `timeout_seconds` is kept by the engine, not by Prefect: the executor runs under a
deadline (tasks/deadline.py) that bounds its HTTP calls and sleeps, and an attempt still
running past it fails as `timeout`. Prefect's task timeout is not set: steps run in worker
threads, where it cannot interrupt a blocking call and warns on every run.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, TypeVar, cast

from prefect import Task, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State, TaskRun
from prefect.context import TaskRunContext
from prefect.futures import PrefectFuture
from prefect.runtime import task_run as task_run_runtime
from prefect.utilities.annotations import quote

from engine.db.connection import shared_store
from engine.db.job_writes import Transition
from engine.db.rows import JobRow
from engine.db.store import JobStore
from engine.definitions.mapping import render
from engine.definitions.plan import StepPlan
from engine.definitions.retry import classify_exception, remaining_retries, should_retry
from engine.errors import ErrorKind, MappingError, StepError
from engine.jobs.transitions import JobStatus
from engine.security.redaction import redact
from engine.settings import get_settings
from tasks.context import StepContext
from tasks.deadline import step_deadline
from tasks.registry import get_executor

T = TypeVar("T")


@dataclass(frozen=True)
class JobInfo:
    """The parts of a job row that steps see as `$.job` and that logs carry."""

    job_id: str
    workflow_id: str
    user_id: str | None
    created_at: str
    input_data: Any
    flow_run_id: str | None = None
    workflow_version: int | None = None

    @classmethod
    def from_row(cls, job: JobRow, flow_run_id: str | None) -> JobInfo:
        """What the steps of `job` see, run by `flow_run_id`."""
        return cls(
            job_id=job.id,
            workflow_id=job.workflow_id,
            user_id=job.user_id,
            created_at=job.created_at.isoformat(),
            input_data=job.input_data,
            flow_run_id=flow_run_id,
            workflow_version=job.workflow_version,
        )

    def as_context(self) -> dict[str, Any]:
        """The `job` object of the mapping context."""
        return {
            "id": self.job_id,
            "workflow_id": self.workflow_id,
            "workflow_version": self.workflow_version,
            "user_id": self.user_id,
            "created_at": self.created_at,
        }

    def mapping_context(self, steps_done: dict[str, Any]) -> dict[str, Any]:
        """What JSONPaths are evaluated over: `{input, steps, job}`."""
        return {"input": self.input_data, "steps": steps_done, "job": self.as_context()}


#: Last attempt number of each (job, step) run in this process, for the final error message.
_LAST_ATTEMPT: dict[tuple[str, str], int] = {}


def pop_last_attempt(job_id: str, step_id: str) -> int:
    """The last attempt number of a finished step (1 if unknown), forgotten afterwards: a
    warm worker lives long, the table must not grow."""
    return _LAST_ATTEMPT.pop((job_id, step_id), 1)


#: Steps whose retry was rescheduled past this flow run: (job, step) -> the retry's time.
_RESCHEDULED: dict[tuple[str, str], datetime] = {}


def pop_rescheduled(job_id: str, step_id: str) -> datetime | None:
    """When a failed step's retry was rescheduled to (None: it was not), forgotten after."""
    return _RESCHEDULED.pop((job_id, step_id), None)


class StepFailedError(Exception):
    """A step's final failure, with what the job's error_message must name."""

    def __init__(self, step: StepPlan, kind: ErrorKind, message: str, attempts: int) -> None:
        super().__init__(
            f"step '{step.step_id}' (transformer '{step.transformer_id}') failed after "
            f"{attempts} attempt{'s' if attempts != 1 else ''}: {kind.value}: {message}"
        )
        self.step = step
        self.kind = kind


class RetryRescheduled(Exception):  # noqa: N818 - control flow, not an error
    """A step's retry was rescheduled: the flow run ends and runs again at `at`."""

    def __init__(self, step_id: str, at: datetime) -> None:
        super().__init__(f"step '{step_id}' retries at {at.isoformat()}")
        self.step_id = step_id
        self.at = at


def error_text(exc: BaseException) -> str:
    """The message a step error is recorded with (at most 2000 characters)."""
    if isinstance(exc, StepError):
        return exc.message
    text = str(exc) or type(exc).__name__
    return text[:2000]


def _log_fields(job: JobInfo, step: StepPlan, attempt: int) -> dict[str, Any]:
    return {
        "job_id": job.job_id,
        "workflow_id": job.workflow_id,
        "step_id": step.step_id,
        "transformer_id": step.transformer_id,
        "attempt": attempt,
    }


def _retry_condition(_task: Any, task_run: TaskRun, state: State[Any]) -> bool:
    """The hook Prefect calls after a failed attempt that still has retries left.

    One function for every step (so a step's task options are built once, see `_step_task`):
    the job and the step are the attempt's own parameters, read from its run context.
    """
    parameters = TaskRunContext.get().parameters  # type: ignore[union-attr]
    job, step = cast(JobInfo, parameters["job"]), cast(StepPlan, parameters["step"])
    first_attempt = int(parameters.get("first_attempt", 1))
    store = shared_store()
    exc = state.result(raise_on_failure=False)
    kind = classify_exception(exc) if isinstance(exc, BaseException) else ErrorKind.INTERNAL
    retries_done = first_attempt - 1 + max(task_run.run_count, 1) - 1
    if not should_retry(step.policy, kind, retries_done):
        return False
    # Prefect schedules the retry at now + delays[retries_done]; we handed it that list.
    delay = step.delays[min(retries_done, len(step.delays) - 1)] if step.delays else 0.0
    next_at = datetime.now(UTC) + timedelta(seconds=delay)
    reschedule = delay > get_settings().retry_reschedule_seconds
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
                f"{kind.value}: {error_text(exc) if isinstance(exc, BaseException) else ''}"
            ),
            detail={"kind": kind.value, "delay_seconds": delay, "rescheduled": reschedule},
        ),
        flow_run_id=job.flow_run_id,
        event=("retry_rescheduled", {"next_attempt": retries_done + 2}) if reschedule else None,
    )
    if reschedule:
        _RESCHEDULED[(job.job_id, step.step_id)] = next_at
    get_run_logger().warning(
        "job awaiting_retry: step '%s' retry in %.1f s%s",
        step.step_id,
        delay,
        " (flow run rescheduled)" if reschedule else "",
        extra={
            **_log_fields(job, step, retries_done + 1),
            "error_kind": kind.value,
            "status": "awaiting_retry",
        },
    )
    return not reschedule


def _start_attempt(store: JobStore, job: JobInfo, step: StepPlan, attempt: int) -> None:
    """Mark the job running on this step; StepError if this flow run no longer owns it."""
    if not store.transition(
        job.job_id,
        Transition(status=JobStatus.RUNNING, step_id=step.step_id, attempt=attempt),
        flow_run_id=job.flow_run_id,
        event=("step_started", {"transformer_id": step.transformer_id}),
    ):
        # The job finished or a resubmitted flow run took it over: this run must stop.
        raise StepError(
            ErrorKind.INTERNAL,
            "the job is no longer owned by this flow run (finished or resubmitted)",
        )


def step_context(job: JobInfo, step: StepPlan, attempt: int) -> StepContext:
    """What an executor is told about the attempt it runs (a step's, or a fan-out item's)."""
    return StepContext(
        job_id=job.job_id,
        workflow_id=job.workflow_id,
        step_id=step.step_id,
        transformer_id=step.transformer_id,
        attempt=attempt,
        user_id=job.user_id,
        settings=get_settings(),
    )


def _call_executor(
    job: JobInfo, step: StepPlan, steps_done: dict[str, Any], attempt: int, log_io: bool
) -> Any:
    """Map the step's input from earlier outputs and run its transformer's executor."""
    try:
        step_input = render(
            step.input_template, job.mapping_context(steps_done), where=f"step '{step.step_id}'"
        )
    except MappingError as exc:
        raise StepError(ErrorKind.MAPPING, exc.message) from exc
    executor = get_executor(step.target_function)
    ctx = step_context(job, step, attempt)
    if log_io:
        get_run_logger().info(
            "step input: %s",
            json.dumps(redact(step_input), default=str),
            extra=_log_fields(job, step, attempt),
        )
    return executor(step.config, step_input, ctx)


def within_timeout(seconds: float, call: Callable[[], T]) -> T:
    """`call()` as a step attempt with `seconds` to finish. Past the deadline the attempt
    fails with the step's timeout error, whatever `call` returned or raised (a call cut short
    by the deadline raises an error of its own, e.g. an HTTP read timeout, replaced here)."""
    with step_deadline(seconds) as deadline:
        try:
            result = call()
        except Exception as exc:
            if deadline.passed():
                raise deadline.error() from exc
            raise
    if deadline.passed():
        raise deadline.error()
    return result


def _record_failure(
    store: JobStore, job: JobInfo, step: StepPlan, attempt: int, exc: BaseException, ms: float
) -> None:
    """The failed attempt's event and log line (the exception then propagates to Prefect)."""
    kind = classify_exception(exc)
    store.add_event(
        job.job_id,
        "step_failed",
        step_id=step.step_id,
        attempt=attempt,
        detail={
            "transformer_id": step.transformer_id,
            "kind": kind.value,
            "error": error_text(exc),
            "duration_ms": ms,
        },
    )
    get_run_logger().warning(
        "step failed: %s: %s",
        kind.value,
        error_text(exc),
        extra={**_log_fields(job, step, attempt), "error_kind": kind.value, "duration_ms": ms},
    )


@task(cache_policy=NO_CACHE, persist_result=False)
def run_step(
    job: JobInfo,
    step: StepPlan,
    steps_done: dict[str, Any],
    log_io: bool = False,
    first_attempt: int = 1,
) -> Any:
    """One attempt of one step: map its input, run its executor, store its output.
    `first_attempt` is the number of this task run's first attempt (above 1 when earlier
    attempts failed in a flow run that ended for a rescheduled retry)."""
    store = shared_store()
    logger = get_run_logger()
    attempt = first_attempt - 1 + int(task_run_runtime.run_count or 1)
    log_ctx = _log_fields(job, step, attempt)
    _LAST_ATTEMPT[(job.job_id, step.step_id)] = attempt
    _start_attempt(store, job, step, attempt)
    logger.info("step started", extra=log_ctx)
    started = time.perf_counter()
    try:
        output = within_timeout(
            step.timeout_seconds, lambda: _call_executor(job, step, steps_done, attempt, log_io)
        )
    except BaseException as exc:
        _record_failure(
            store, job, step, attempt, exc, round((time.perf_counter() - started) * 1000, 1)
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


def _untraversed(value: T) -> T:
    """`value` wrapped so Prefect passes it to the task without walking it (`quote`).

    Prefect unwraps it before the task body runs, so the task sees `value` itself; hence the
    type.
    """
    return cast(T, quote(value))


@lru_cache(maxsize=1024)
def _step_task(name: str, retries: int, delays: tuple[float, ...]) -> Task[..., Any]:
    """The step task with one step's name and retry policy, built once per distinct step and
    reused by every job: `with_options` copies the task and reads its source each time."""
    return run_step.with_options(
        name=name,
        task_run_name=name,
        retries=retries,
        # Jitter is already applied in these delays, so Prefect's own jitter stays off and
        # next_retry_at is exact.
        retry_delay_seconds=list(delays) or 0,
        retry_jitter_factor=0.0,
        retry_condition_fn=_retry_condition,
    )


def submit_step(
    job: JobInfo, step: StepPlan, steps_done: dict[str, Any], log_io: bool, first_attempt: int = 1
) -> PrefectFuture[Any]:
    """Submit the step's task run with the retries its policy still allows from
    `first_attempt` on, and the retry hook (the timeout is kept by the task itself; see the
    module docstring)."""
    retries, delays = remaining_retries(step.policy.max_retries, step.delays, first_attempt)
    configured = _step_task(step.step_id, retries, delays)
    # quote(): Prefect would otherwise walk every value of the parameters on each submit (to
    # find futures and task inputs), so a large input_data cost CPU on every step.
    return configured.submit(
        _untraversed(job), _untraversed(step), _untraversed(dict(steps_done)), log_io, first_attempt
    )
