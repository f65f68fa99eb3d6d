"""Fan-out steps (`for_each`): the step runs once per item of a list, each item its own
Prefect task run, at most `max_concurrency` at once.

The step is one task run named with the step id, recorded like any step: the job `running`
on it with a `step_started` event, then its output in `step_data` with `step_succeeded` (or a
`step_failed` event and the job failed by the flow). It resolves the `for_each` path over
``{input, steps, job}`` (a singular path must hold a list; any other path gives its list of
matches), refuses a list longer than MAX_FAN_OUT_ITEMS (error kind `mapping`, before any item
runs), and submits the items as task runs named ``step[index]`` (flows/fan_out_items.py),
each with the step's retry policy and timeout, their input mapping reading `$.item` and
`$.index`.

Output: the list of the items' results, in item order. An item that fails after its retries
fails the step (`on_item_error: "fail"`): the items already running finish, no new one
starts, and the step fails with that item's error kind, naming the item. With
`on_item_error: "collect"` the step completes with
``{"results": [... null for each failed item ...], "errors": [{"index", "kind", "message"}]}``
(errors in index order).

Resubmission: every finished item stores its output in its `item_succeeded` event; the step
run by a resubmitted flow run (a worker killed mid-fan-out) reuses the results stored since
the job's last rerun whose rendered input is unchanged, and runs only the other items.

Before each item starts, the job is read once: a cancel requested by its owner, the job's end
(e.g. failed by its deadline) or another flow run owning it (resubmitted) stops new items from
starting; the running ones finish, and the step fails (after a cancel the flow then ends the
job as cancelled).
"""

from __future__ import annotations

import queue
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal

from prefect import Task, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State
from prefect.futures import PrefectFuture

from engine.db.connection import shared_store
from engine.db.store import JobStore
from engine.definitions.fan_out_checks import DEFAULT_MAX_CONCURRENCY
from engine.definitions.mapping import evaluate
from engine.definitions.plan import StepPlan, WorkflowPlan
from engine.definitions.retry import classify_exception, remaining_retries
from engine.errors import ErrorKind, MappingError, StepError
from engine.settings import get_settings
from flows import fan_out_items
from flows.run_step import (
    _LAST_ATTEMPT,
    JobInfo,
    _record_failure,
    _start_attempt,
    _untraversed,
    error_text,
)


@dataclass(frozen=True)
class FanOut:
    """A step's fan-out settings."""

    for_each: str
    max_concurrency: int
    on_item_error: Literal["fail", "collect"]


def fan_out_of(plan: WorkflowPlan, step_id: str) -> FanOut | None:
    """The fan-out of a transformer step (None: the step runs once)."""
    for step in plan.definition.steps:
        if step.id == step_id and step.for_each is not None and step_id in plan.steps:
            return FanOut(
                step.for_each,
                step.max_concurrency or DEFAULT_MAX_CONCURRENCY,
                step.on_item_error,
            )
    return None


def resolve_items(fan: FanOut, context: dict[str, Any], step_id: str) -> list[Any]:
    """The items to run: the for_each list, checked against MAX_FAN_OUT_ITEMS.

    StepError (mapping) when a singular path does not hold a list or matches nothing, or when
    the list is longer than the maximum.
    """
    where = f"step '{step_id}'"
    try:
        items = evaluate(fan.for_each, context, where=where, key="for_each")
    except MappingError as exc:
        raise StepError(ErrorKind.MAPPING, exc.message) from exc
    if not isinstance(items, list):
        raise StepError(
            ErrorKind.MAPPING,
            f"{where}: for_each path {fan.for_each!r} gave {_kind_of(items)}, not a list",
        )
    limit = get_settings().max_fan_out_items
    if len(items) > limit:
        raise StepError(
            ErrorKind.MAPPING,
            f"{where}: for_each path {fan.for_each!r} gave {len(items)} items, more than the "
            f"maximum of {limit} (MAX_FAN_OUT_ITEMS)",
        )
    return items


def _kind_of(value: Any) -> str:
    """How an error message names a JSON value's type."""
    if value is None:
        return "null"
    names = {bool: "a boolean", str: "a string", dict: "an object", int: "a number"}
    return next((name for kind, name in names.items() if isinstance(value, kind)), "a number")


@dataclass
class _Outcome:
    """What the items gave: results by index, errors, and the first failure's attempts."""

    results: list[Any]
    errors: list[dict[str, Any]] = field(default_factory=list)
    failed_attempts: int = 1
    reused: int = 0

    def record(self, index: int, state: State[Any], result: Any, attempts: int) -> bool:
        """Keep one finished item's result or error; True if it failed."""
        if state.is_completed():
            self.results[index] = result
            return False
        exc = state.result(raise_on_failure=False)
        if isinstance(exc, BaseException):
            kind, message = classify_exception(exc), error_text(exc)
        else:
            kind, message = ErrorKind.INTERNAL, state.message or state.name or "failed"
        if not self.errors:
            self.failed_attempts = attempts
        self.errors.append({"index": index, "kind": kind.value, "message": message})
        return True

    def output(self, on_item_error: str) -> Any:
        """The step's output: the results, or results and errors when collecting."""
        if on_item_error == "collect":
            return {"results": self.results, "errors": sorted(self.errors, key=_by_index)}
        return self.results


def _by_index(error: dict[str, Any]) -> int:
    return int(error["index"])


def _reuse_stored(
    store: JobStore,
    job: JobInfo,
    step: StepPlan,
    steps_done: dict[str, Any],
    items: list[Any],
    outcome: _Outcome,
) -> set[int]:
    """Fill in the results a previous flow run of this job stored for unchanged items."""
    stored = fan_out_items.stored_results(store, job.job_id, step.step_id)
    reused: set[int] = set()
    for index, (digest, output) in stored.items():
        if index >= len(items):
            continue
        try:
            rendered = fan_out_items.item_input(job, step, steps_done, items[index], index)
        except StepError:
            continue  # the item runs and reports its mapping error itself
        if fan_out_items.input_hash(rendered) == digest:
            outcome.results[index] = output
            reused.add(index)
    outcome.reused = len(reused)
    return reused


def _notify(finished: queue.Queue[int], index: int) -> Callable[[PrefectFuture[Any]], None]:
    def done(_future: PrefectFuture[Any]) -> None:
        finished.put(index)

    return done


def _run_items(
    job: JobInfo,
    step: StepPlan,
    fan: FanOut,
    steps_done: dict[str, Any],
    items: list[Any],
    outcome: _Outcome,
    skip: set[int],
    log_io: bool,
) -> None:
    """Run every item not in `skip`, at most `max_concurrency` at once, in index order;
    after a failure (in "fail" mode), a cancel request, or the job's end or takeover, no new
    item starts."""
    retries, delays = remaining_retries(step.policy.max_retries, step.delays, 1)
    item_task = fan_out_items.item_task(step.step_id, retries, delays)
    todo = deque(i for i in range(len(items)) if i not in skip)
    finished: queue.Queue[int] = queue.Queue()
    running: dict[int, PrefectFuture[Any]] = {}
    store = shared_store()
    stop = False
    halted: str | None = None  # why no new item may start (cancel, finished, resubmitted)
    while True:
        while todo and len(running) < fan.max_concurrency and not stop:
            if (halted := fan_out_items.stop_reason(store, job)) is not None:
                stop = True
                break
            index = todo.popleft()
            future = item_task.submit(
                _untraversed(job),
                _untraversed(step),
                _untraversed(steps_done),
                _untraversed(items[index]),
                index,
                f"{step.step_id}[{index}]",
                log_io,
            )
            future.add_done_callback(_notify(finished, index))
            running[index] = future
        if not running:
            break
        index = finished.get()
        future = running.pop(index)
        future.wait()
        state = future.state
        result = future.result() if state.is_completed() else None
        attempts = fan_out_items.pop_item_attempts(job.job_id, step.step_id, index)
        if outcome.record(index, state, result, attempts) and fan.on_item_error == "fail":
            stop = True
    if halted is not None:
        # After a cancel the flow ends the job as cancelled (flows/job_control.py), not failed;
        # otherwise another flow run owns the job, or it has ended, as for a step attempt.
        raise StepError(ErrorKind.INTERNAL, f"{halted}: {len(todo)} item(s) not started")


def _fail_on_items(job: JobInfo, step: StepPlan, outcome: _Outcome, total: int) -> None:
    """The step fails with its first failed item's error (its attempts count as the step's)."""
    first = outcome.errors[0]
    _LAST_ATTEMPT[(job.job_id, step.step_id)] = outcome.failed_attempts
    others = len(outcome.errors) - 1
    raise StepError(
        ErrorKind(first["kind"]),
        f"item {first['index']} of {total} failed: {first['message']}"
        + (f" ({others} more item(s) failed)" if others else ""),
    )


@task(cache_policy=NO_CACHE, persist_result=False)
def run_fan_out(
    job: JobInfo, step: StepPlan, fan: FanOut, steps_done: dict[str, Any], log_io: bool = False
) -> Any:
    """The whole fan-out step: resolve its items, run them (reusing results a killed flow run
    stored), and store the list of results as the step's output."""
    store = shared_store()
    _LAST_ATTEMPT[(job.job_id, step.step_id)] = 1
    _start_attempt(store, job, step, 1)
    started = time.perf_counter()
    try:
        items = resolve_items(fan, job.mapping_context(steps_done), step.step_id)
        outcome = _Outcome(results=[None] * len(items))
        skip = _reuse_stored(store, job, step, steps_done, items, outcome) if items else set()
        _run_items(job, step, fan, steps_done, items, outcome, skip, log_io)
        if outcome.errors and fan.on_item_error == "fail":
            _fail_on_items(job, step, outcome, len(items))
    except BaseException as exc:
        ms = round((time.perf_counter() - started) * 1000, 1)
        _record_failure(store, job, step, 1, exc, ms)
        raise
    output = outcome.output(fan.on_item_error)
    detail = {
        "transformer_id": step.transformer_id,
        "duration_ms": round((time.perf_counter() - started) * 1000, 1),
        "items": len(items),
        "failed_items": len(outcome.errors),
        "reused_items": outcome.reused,
    }
    store.save_step_output(job.job_id, step.step_id, output, attempt=1, detail=detail)
    get_run_logger().info(
        "fan-out step succeeded: %d item(s), %d failed, %d reused",
        len(items),
        len(outcome.errors),
        outcome.reused,
        extra={"job_id": job.job_id, "step_id": step.step_id},
    )
    return output


@lru_cache(maxsize=1024)
def _fan_out_task(step_id: str) -> Task[..., Any]:
    """The fan-out task named after one step, built once (`with_options` reads the source)."""
    return run_fan_out.with_options(name=step_id, task_run_name=step_id)


def submit_fan_out(
    job: JobInfo, step: StepPlan, fan: FanOut, steps_done: dict[str, Any], log_io: bool
) -> PrefectFuture[Any]:
    """Submit the fan-out step's task run (named with the step id, no retries of its own:
    its items retry)."""
    return _fan_out_task(step.step_id).submit(
        _untraversed(job), _untraversed(step), fan, _untraversed(dict(steps_done)), log_io
    )
