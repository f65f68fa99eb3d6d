"""Sub-workflow steps in the flow: a `workflow` step starts a child job and the parent waits.

When `_execute` finds a `workflow` step ready, `start`:
- first time: renders the step's input, checks it against the child workflow's input_schema
  (a mismatch, a missing or disabled workflow, or a parent nested `MAX_NESTING_DEPTH` deep
  fails the step), then records the parent's wait and the child job in one transaction
  (engine.db.sub_workflows) and creates the child's flow run on the parent's deployment
  (engine.dispatch.RunStarter, key: the child's job id; the run is tagged
  `parent-job-<id>`); the step parks like any wait (flows/waiting.py), its flow run Paused
  "AwaitingWorkflow", holding no worker;
- again (a resubmitted or resumed flow run): finds the same wait and child, never a second
  one; a child that has no flow run yet gets it (same key, so at most one);
- decided (the child ended: a trigger decided the wait in the child's terminal transition):
  a completed child's final_result is recorded as the step's output by a task run of the
  step's name; a failed child fails the step, naming the child job and its error.

The child's flow run resumes the parent's as it ends (`on_child_finished`); the maintenance
pass (`run_sub_workflows`) decides waits whose child ended unseen, resumes their parents,
and cancels children whose parent no longer waits for them (it failed, was cancelled, or a
rerun redid the step).
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any
from uuid import UUID

from prefect import Flow, Task, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import FlowRun, State
from prefect.futures import PrefectFuture
from prefect.runtime import deployment as deployment_runtime
from prefect.runtime import flow_run as flow_run_runtime

from engine.db import job_control
from engine.db.connection import shared_store
from engine.db.rows import Row
from engine.db.store import JobStore
from engine.db.sub_workflows import ChildStore, waiting_for_child
from engine.definitions.inputs import input_problems
from engine.definitions.mapping import render
from engine.definitions.plan import WaitPlan
from engine.definitions.wait_steps import WorkflowCall
from engine.dispatch import RunStarter
from engine.errors import ConflictError, ErrorKind, MappingError, NotFoundError, StepError
from engine.settings import get_settings
from flows.run_step import JobInfo
from flows.waiting import Parked

logger = logging.getLogger("supaflow.sub_workflows")
Log = logging.Logger | logging.LoggerAdapter[Any]

#: The deepest a child may be nested (a parent started by the API is at depth 0). Cycles are
#: refused on save; this bounds a chain that was stored some other way.
MAX_NESTING_DEPTH = 10

_STARTERS: dict[str, RunStarter] = {}
_STARTERS_LOCK = threading.Lock()


def is_call(wait: WaitPlan) -> bool:
    """True for a `workflow` step (a sub-workflow), not another wait kind."""
    return isinstance(wait.spec, WorkflowCall)


def _starter(deployment_name: str | None = None) -> RunStarter:
    """One run starter per deployment in this process (its client opened on first use)."""
    name = deployment_name or get_settings().prefect_deployment
    with _STARTERS_LOCK:
        if name not in _STARTERS:
            _STARTERS[name] = RunStarter.own_client(name)
        return _STARTERS[name]


def _own_deployment() -> str | None:
    """`<flow>/<deployment>` of this flow run (its child runs on the same one), if any."""
    if deployment_runtime.id is None:
        return None
    return f"{flow_run_runtime.flow_name}/{deployment_runtime.name}"


def _child_input(job: JobInfo, wait: WaitPlan, steps_done: dict[str, Any]) -> tuple[Any, int]:
    """The child's input_data and workflow version; StepError when the child cannot start
    (its workflow missing or disabled, or the input not matching its input_schema)."""
    spec = wait.spec
    assert isinstance(spec, WorkflowCall)
    where = f"step '{wait.step_id}' input"
    data = render(wait.input_template, job.mapping_context(steps_done), where=where)
    try:
        workflow = shared_store().get_workflow(spec.workflow_id, spec.version)
    except NotFoundError as exc:
        raise StepError(ErrorKind.CONFIG, exc.message) from None
    if not workflow["enabled"]:
        raise StepError(ErrorKind.CONFIG, f"workflow '{spec.workflow_id}' is disabled")
    schema = (workflow["definition"] or {}).get("input_schema") or {"type": "object"}
    problems = input_problems(schema, data)
    if problems:
        found = "; ".join(f"{p.location}: {p.message}" for p in problems)
        raise StepError(
            ErrorKind.MAPPING,
            f"the input does not match workflow '{spec.workflow_id}' "
            f"(version {workflow['version']}) input_schema: {found}",
        )
    return data, int(workflow["version"])


def _tag_child_run(starter: RunStarter, flow_run_id: str, parent_job_id: str) -> None:
    """Tag the child's flow run `parent-job-<id>` (best effort: the link is in the jobs)."""
    try:
        run = starter.client.read_flow_run(UUID(flow_run_id))
        tag = f"parent-job-{parent_job_id}"
        if tag not in run.tags:
            starter.client.update_flow_run(UUID(flow_run_id), tags=[*run.tags, tag])
    except Exception as exc:
        logger.info("could not tag the child's flow run: %s", exc)


def _ensure_run(store: ChildStore, child_id: str, parent_job_id: str) -> None:
    """Create the child's flow run unless it has one (Prefect out of reach: the child stays
    pending and the dispatcher or maintenance creates it, with the same key), and tag it.
    A run the admission dispatcher created first is tagged too."""
    starter = _starter(_own_deployment())
    run = store.store.get_job(child_id)["prefect_flow_run_id"]
    if run is None:
        run = starter.try_start(child_id)
        if run is not None:
            store.set_child_run(child_id, run)
    if run is not None:
        _tag_child_run(starter, str(run), parent_job_id)


def arrive(job: JobInfo, wait: WaitPlan, steps_done: dict[str, Any]) -> Row | Parked:
    """The decided wait of this ready `workflow` step, or where it parks (see the module
    docstring). StepError or MappingError when the child cannot start."""
    store = ChildStore(shared_store())
    row = store.open_wait(job.job_id, wait.step_id)
    spec = wait.spec
    assert isinstance(spec, WorkflowCall)
    if row is None:
        data, version = _child_input(job, wait, steps_done)
        if store.nesting_depth(job.job_id, MAX_NESTING_DEPTH) >= MAX_NESTING_DEPTH:
            raise StepError(
                ErrorKind.CONFIG,
                f"sub-workflows nest at most {MAX_NESTING_DEPTH} deep: this job is a child "
                f"{MAX_NESTING_DEPTH} levels down, so it starts no child",
            )
        try:
            begun = store.begin_child(
                job.job_id, wait.step_id, (spec, version, data), datetime.now(UTC)
            )
        except NotFoundError as exc:
            raise StepError(ErrorKind.CONFIG, exc.message) from None
        row, child_id = begun.wait, begun.child_job_id
    else:
        child_id = None if row["child_job_id"] is None else str(row["child_job_id"])
        if row["status"] == "pending":  # still waiting: say so again (a rerun cleared it)
            store.set_waiting(
                job.job_id,
                waiting_for_child(wait.step_id, row["created_at"], child_id, spec.workflow_id),
            )
    if row["status"] == "pending" and store.decide_ended(job.job_id):
        row = store.open_wait(job.job_id, wait.step_id) or row
    if row["status"] == "decided":
        return row
    if child_id is not None:
        _ensure_run(store, child_id, job.job_id)
    return Parked(job.job_id, wait.step_id, str(row["id"]), "workflow", None)


def _child_failure(output: dict[str, Any]) -> StepError:
    """The step's error for a failed child: its job id, its workflow and its error."""
    try:
        kind = ErrorKind(output.get("error_kind") or "")
    except ValueError:
        kind = ErrorKind.INTERNAL
    message = output.get("error_message") or "no error message"
    return StepError(kind, f"child job {output.get('child_job_id')} failed: {message}")


@task(cache_policy=NO_CACHE, persist_result=False)
def finish_child(
    job_id: str, wait: Row | None, error: str | None = None, kind: str | None = None
) -> Any:
    """Record a completed child's final_result as its step's output; the output. A failed
    child, or `error` (the child could not start), fails the step."""
    if error is not None or wait is None:
        raise StepError(ErrorKind(kind or ErrorKind.INTERNAL.value), error or "no child")
    output = dict(wait["output"] or {})
    if output.get("status") != "completed":
        raise _child_failure(output)
    ChildStore(shared_store()).consume(wait, output.get("final_result"))
    return output.get("final_result")


@lru_cache(maxsize=1024)
def _finish_task(name: str) -> Task[..., Any]:
    """The finishing task with the step's name (the Prefect UI shows one per step)."""
    return finish_child.with_options(name=name, task_run_name=name)


def start(
    job: JobInfo, wait: WaitPlan, steps_done: dict[str, Any], parked: list[Parked]
) -> PrefectFuture[Any] | None:
    """A ready `workflow` step: None when it parks (added to `parked`), else the task run
    that records the child's result (or fails the step)."""
    try:
        arrived = arrive(job, wait, steps_done)
    except StepError as exc:
        return _finish_task(wait.step_id).submit(job.job_id, None, exc.message, exc.kind.value)
    except MappingError as exc:
        return _finish_task(wait.step_id).submit(
            job.job_id, None, exc.message, ErrorKind.MAPPING.value
        )
    if isinstance(arrived, Parked):
        parked.append(arrived)
        return None
    return _finish_task(wait.step_id).submit(job.job_id, dict(arrived))


def resume_parent(store: JobStore, child_job_id: str) -> str | None:
    """Resume the flow run of the child's parent once its wait is decided; the run id."""
    row = ChildStore(store).parent_run(child_job_id)
    if row is None or row["prefect_flow_run_id"] is None:
        return None
    run = str(row["prefect_flow_run_id"])
    return run if _starter().resume(run) else None


def on_child_finished(flow: Flow[..., Any], flow_run: FlowRun, state: State[Any]) -> None:
    """run_workflow's hook on its final state: a child job's end resumes its parent."""
    job_id = flow_run.parameters.get("job_id")
    try:
        if job_id and shared_store().get_job(str(job_id)).get("parent_job_id"):
            resume_parent(shared_store(), str(job_id))
    except Exception as exc:  # maintenance resumes a decided wait whose resume failed
        logger.warning("could not resume the parent job: %s", exc, extra={"job_id": job_id})


def _cancel_orphans(store: JobStore, starter: RunStarter, limit: int, log: Log) -> list[str]:
    """Cancel the children whose parent no longer waits for them; their ids."""
    cancelled: list[str] = []
    for child in ChildStore(store).orphaned_children(limit):
        child_id = str(child["id"])
        try:
            outcome = job_control.cancel_job(store, child_id, str(child["user_id"]))
        except (ConflictError, NotFoundError):
            continue  # it ended meanwhile
        if outcome.flow_run_id is not None:
            starter.cancel(outcome.flow_run_id, "its parent job no longer waits for it")
        cancelled.append(child_id)
        log.info(
            "child job cancelled: its parent no longer waits for it",
            extra={"job_id": child_id, "parent_job_id": str(child["parent_job_id"])},
        )
    return cancelled


def run_sub_workflows(
    store: JobStore, starter: RunStarter, *, log: Log, limit: int = 100
) -> dict[str, Any]:
    """The maintenance pass: decide the waits whose child ended unseen and resume their
    parents, and cancel orphaned children; what it did (`{"error": True}` on failure)."""
    try:
        decided = ChildStore(store).decide_ended(None, limit)
        resumed = [
            str(r["prefect_flow_run_id"])
            for r in decided
            if r["prefect_flow_run_id"] and starter.resume(str(r["prefect_flow_run_id"]))
        ]
        cancelled = _cancel_orphans(store, starter, limit, log)
    except Exception:
        log.exception("sub-workflow pass failed", extra={"decision": "sub_workflows"})
        return {"error": True}
    return {"decided": [str(r["id"]) for r in decided], "resumed": resumed, "cancelled": cancelled}
