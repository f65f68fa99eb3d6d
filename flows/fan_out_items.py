"""One item of a fan-out step: its own Prefect task run (``step[index]``), with the step's
retry policy, timeout and transformer (see flows/fan_out.py for the step around it).

An item writes job events only, never the job's status (the job stays `running` on the step
while its items run and retry): `item_failed` for each failed attempt, `item_succeeded` with
the item's output and a hash of its rendered input. Those outputs are what a resubmitted flow
run reuses (`stored_results`).

An item's retry always waits inside the flow run, however long its delay: a fan-out's items
are never rescheduled past the flow run (RETRY_RESCHEDULE_SECONDS applies to whole steps).
"""

from __future__ import annotations

import hashlib
import json
import time
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, cast

from prefect import Task, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State, TaskRun
from prefect.context import TaskRunContext
from prefect.runtime import task_run as task_run_runtime

from engine.db.connection import shared_store
from engine.db.pool import query
from engine.db.store import JobStore
from engine.definitions.mapping import render
from engine.definitions.plan import StepPlan
from engine.definitions.retry import classify_exception, should_retry
from engine.errors import ErrorKind, MappingError, StepError
from engine.jobs.transitions import TERMINAL
from engine.security.redaction import redact
from flows.run_step import JobInfo, error_text, step_context, within_timeout
from tasks.registry import get_executor

#: The `stop_reason` of a cancel requested by the job's owner.
CANCELLED = "the job's owner asked to cancel it"

TERMINAL_VALUES = frozenset(status.value for status in TERMINAL)

#: Last attempt number of each (job, step, index) item run in this process (popped by the
#: step once the item is done, for its error report).
_ITEM_ATTEMPTS: dict[tuple[str, str, int], int] = {}


def pop_item_attempts(job_id: str, step_id: str, index: int) -> int:
    """The last attempt number of a finished item (1 if unknown), forgotten afterwards."""
    return _ITEM_ATTEMPTS.pop((job_id, step_id, index), 1)


def item_context(job: JobInfo, steps_done: dict[str, Any], item: Any, index: int) -> Any:
    """The mapping context of one item: `{input, steps, job}` plus `item` and `index`."""
    return {**job.mapping_context(steps_done), "item": item, "index": index}


def item_input(
    job: JobInfo, step: StepPlan, steps_done: dict[str, Any], item: Any, index: int
) -> Any:
    """The item's rendered input; StepError (mapping) when the mapping does not resolve."""
    try:
        return render(
            step.input_template,
            item_context(job, steps_done, item, index),
            where=f"step '{step.step_id}' item {index}",
        )
    except MappingError as exc:
        raise StepError(ErrorKind.MAPPING, exc.message) from exc


def input_hash(step_input: Any) -> str:
    """A stable digest of a rendered input (what a stored item result was computed from)."""
    text = json.dumps(step_input, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def stored_results(store: JobStore, job_id: str, step_id: str) -> dict[int, tuple[str, Any]]:
    """The step's item outputs stored since the job's last rerun: index -> (input hash,
    output)."""
    with store.pool.connection() as conn:
        rows = conn.execute(
            query("fan_out_items_done"), {"job_id": job_id, "step_id": step_id}
        ).fetchall()
    return {int(row["index"]): (str(row["input_hash"]), row["output"]) for row in rows}


def stop_reason(store: JobStore, job: JobInfo) -> str | None:
    """Why no further item may start (None: it may): the owner asked to cancel, or the job
    finished (e.g. failed by its deadline) or a resubmitted flow run took it over."""
    with store.pool.connection() as conn:
        row = conn.execute(query("fan_out_job_live"), {"job_id": job.job_id}).fetchone()
    if row is None or row["status"] in TERMINAL_VALUES:
        return "the job is finished"
    if job.flow_run_id is not None and row["flow_run_id"] != job.flow_run_id:
        return "the job is no longer owned by this flow run (resubmitted)"
    if row["cancel_requested"]:
        return CANCELLED
    return None


def _log_fields(job: JobInfo, step: StepPlan, index: int, attempt: int) -> dict[str, Any]:
    return {
        "job_id": job.job_id,
        "workflow_id": job.workflow_id,
        "step_id": step.step_id,
        "transformer_id": step.transformer_id,
        "item_index": index,
        "attempt": attempt,
    }


def _call(job: JobInfo, step: StepPlan, step_input: Any, attempt: int, log_io: bool) -> Any:
    """Run the step's executor on one item's input."""
    ctx = step_context(job, step, attempt)
    if log_io:
        get_run_logger().info("item input: %s", json.dumps(redact(step_input), default=str))
    return get_executor(step.target_function)(step.config, step_input, ctx)


def _attempt(
    job: JobInfo, step: StepPlan, steps_done: dict[str, Any], item: Any, index: int, log_io: bool
) -> tuple[str, Any]:
    """Render the item's input and run it under the step's timeout: (input hash, output)."""
    attempt = int(task_run_runtime.run_count or 1)

    def call() -> tuple[str, Any]:
        step_input = item_input(job, step, steps_done, item, index)
        return input_hash(step_input), _call(job, step, step_input, attempt, log_io)

    return within_timeout(step.timeout_seconds, call)


@task(cache_policy=NO_CACHE, persist_result=False)
def run_item(
    job: JobInfo,
    step: StepPlan,
    steps_done: dict[str, Any],
    item: Any,
    index: int,
    label: str,
    log_io: bool = False,
) -> Any:
    """One attempt of one fan-out item: map its input (with `$.item` and `$.index`), run the
    step's executor, and record the outcome as an item event. `label` is the task run's name
    (``step[index]``)."""
    store = shared_store()
    attempt = int(task_run_runtime.run_count or 1)
    _ITEM_ATTEMPTS[(job.job_id, step.step_id, index)] = attempt
    fields = _log_fields(job, step, index, attempt)
    started = time.perf_counter()
    try:
        digest, output = _attempt(job, step, steps_done, item, index, log_io)
    except BaseException as exc:
        ms = round((time.perf_counter() - started) * 1000, 1)
        kind = classify_exception(exc)
        store.add_event(
            job.job_id,
            "item_failed",
            step_id=step.step_id,
            attempt=attempt,
            detail={
                "index": index,
                "kind": kind.value,
                "error": error_text(exc),
                "duration_ms": ms,
            },
        )
        get_run_logger().warning(
            "%s failed: %s: %s", label, kind.value, error_text(exc), extra=fields
        )
        raise
    ms = round((time.perf_counter() - started) * 1000, 1)
    store.add_event(
        job.job_id,
        "item_succeeded",
        step_id=step.step_id,
        attempt=attempt,
        detail={"index": index, "duration_ms": ms, "input_hash": digest, "output": output},
    )
    if log_io:
        get_run_logger().info("%s output: %s", label, json.dumps(redact(output), default=str))
    return output


def _item_retry_condition(_task: Any, task_run: TaskRun, state: State[Any]) -> bool:
    """Prefect's hook after a failed item attempt with retries left: retry only the error
    kinds the step's policy retries. Nothing is written to the job (see the module
    docstring)."""
    parameters = TaskRunContext.get().parameters  # type: ignore[union-attr]
    job, step = cast(JobInfo, parameters["job"]), cast(StepPlan, parameters["step"])
    index = int(parameters["index"])
    exc = state.result(raise_on_failure=False)
    kind = classify_exception(exc) if isinstance(exc, BaseException) else ErrorKind.INTERNAL
    retries_done = max(task_run.run_count, 1) - 1
    if not should_retry(step.policy, kind, retries_done):
        return False
    delay = step.delays[min(retries_done, len(step.delays) - 1)] if step.delays else 0.0
    at = datetime.now(UTC) + timedelta(seconds=delay)
    get_run_logger().warning(
        "%s[%d] retry in %.1f s (at %s)",
        step.step_id,
        index,
        delay,
        at.isoformat(),
        extra={**_log_fields(job, step, index, retries_done + 1), "error_kind": kind.value},
    )
    return True


@lru_cache(maxsize=1024)
def item_task(step_id: str, retries: int, delays: tuple[float, ...]) -> Task[..., Any]:
    """The item task of one step, its runs named ``step[index]`` (from the `label`
    parameter), with the step's retry policy; built once per distinct step."""
    return run_item.with_options(
        name=f"{step_id}[item]",
        task_run_name="{label}",
        retries=retries,
        retry_delay_seconds=list(delays) or 0,
        retry_jitter_factor=0.0,
        retry_condition_fn=_item_retry_condition,
    )
