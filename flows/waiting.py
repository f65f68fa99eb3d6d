"""Wait steps in the flow: reaching a wait parks the job, and the flow run ends holding nothing.

When `_execute` finds a wait step ready, `arrive` looks up the job's open wait at that step:
- none: the wait is recorded (`job_waits` row, `jobs.waiting_for`, `wait_started`) and the
  step is parked;
- pending: still parked (a sleep whose time has come is decided here, reason `woke`);
- decided: its output is recorded as the step's output by a task run of the step's name
  (`start`), `waiting_for` is cleared, `wait_ended` written, and the job goes on.

Once the running steps have finished, a parked job's flow run ends with `end_state`: a
sleep's `Scheduled` state named "Sleeping" at its wake time (Prefect runs the same flow run
again then), or `Paused(reschedule=True)` named "AwaitingApproval" / "AwaitingEvent" with no
pause timeout (maintenance owns deadlines); a decision resumes it (engine.dispatch.resume).
A rescheduled retry of another branch comes first: the run ends AwaitingRetry at its time.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from prefect import Task, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State
from prefect.futures import PrefectFuture
from prefect.states import AwaitingRetry, Paused, Scheduled

from engine.db.connection import shared_store
from engine.db.rows import Row
from engine.db.waits import WaitStore
from engine.definitions.plan import StepPlan, WaitPlan
from engine.definitions.retry import resolve_policy
from engine.definitions.transformers import TransformerConfig
from engine.definitions.wait_steps import WaitKind, wait_kind
from engine.errors import MappingError
from engine.jobs import waits
from engine.jobs.wait_fields import row_fields
from flows.run_step import JobInfo, RetryRescheduled

#: A sleep this close to its wake time counts as woken (Prefect may start a run a little
#: before its scheduled time).
WAKE_TOLERANCE = timedelta(seconds=0.5)

#: The name of the Paused state of each kind of wait that a decision ends.
PAUSED_NAMES: dict[WaitKind, str] = {
    "approval": "AwaitingApproval",
    "event": "AwaitingEvent",
    "workflow": "AwaitingWorkflow",  # a sub-workflow step waits for its child job
}


@dataclass(frozen=True)
class Parked:
    """A wait step the job is waiting at."""

    job_id: str
    step_id: str
    wait_id: str
    kind: WaitKind
    deadline: datetime | None


class WaitsParked(Exception):  # noqa: N818 - control flow, not an error
    """The job waits at one or more steps: its flow run ends (see `end_state`)."""

    def __init__(self, parked: list[Parked], later: RetryRescheduled | None) -> None:
        super().__init__(", ".join(f"step '{p.step_id}' awaits {p.kind}" for p in parked))
        self.parked = parked
        self.later = later


def _wake_if_due(store: WaitStore, wait: Row) -> Row:
    """A pending sleep whose time has come is decided (reason `woke`); its row re-read."""
    if wait["kind"] != "sleep" or wait["status"] != "pending" or wait["deadline"] is None:
        return wait
    if wait["deadline"] - WAKE_TOLERANCE > datetime.now(UTC):
        return wait
    output = waits.sleep_output(wait["deadline"])
    store.decide(
        str(wait["id"]),
        lambda _row: {"output": output, "decided_at": datetime.now(UTC), "reason": "woke"},
    )
    return {**wait, "status": "decided", "output": output}


def arrive(job: JobInfo, wait: WaitPlan, steps_done: dict[str, Any]) -> Row | Parked:
    """The decided wait of this ready wait step (its output is ready), or where it parks.

    MappingError when a sleep's `until.$` does not resolve to a time."""
    store = WaitStore(shared_store())
    row = store.open_wait(job.job_id, wait.step_id)
    if row is None:
        since = datetime.now(UTC)
        until = waits.deadline(
            wait.spec, since, job.mapping_context(steps_done), step_id=wait.step_id
        )
        kind = wait_kind(wait.spec)
        row, _created = store.begin(
            job.job_id,
            wait.step_id,
            row_fields(wait.spec, until),
            waits.waiting_for(kind, wait.step_id, since, until),
        )
    elif row["status"] == "pending":  # still waiting: say so again (a rerun cleared it)
        since = row["created_at"]
        value = waits.waiting_for(row["kind"], wait.step_id, since, row["deadline"])
        store.set_waiting(job.job_id, value)
    row = _wake_if_due(store, row)
    if row["status"] == "decided":
        return row
    return Parked(job.job_id, wait.step_id, str(row["id"]), row["kind"], row["deadline"])


@task(cache_policy=NO_CACHE, persist_result=False)
def finish_wait(job_id: str, wait: Row | None, error: str | None = None) -> Any:
    """Record a decided wait's output as its step's output; the output. With `error` (the
    wait could not begin: a sleep's `until.$` did not resolve), the step fails with it."""
    if error is not None or wait is None:
        raise MappingError(error or "the wait could not begin")
    WaitStore(shared_store()).consume(wait, wait["output"])
    return wait["output"]


@lru_cache(maxsize=1024)
def _finish_task(name: str) -> Task[..., Any]:
    """The finishing task with the wait step's name (the Prefect UI shows one per wait)."""
    return finish_wait.with_options(name=name, task_run_name=name)


def start(
    job: JobInfo, wait: WaitPlan, steps_done: dict[str, Any], parked: list[Parked]
) -> PrefectFuture[Any] | None:
    """A ready wait step: None when it parks (added to `parked`), else the task run that
    records its decided output (or fails the step when the wait cannot begin)."""
    try:
        arrived = arrive(job, wait, steps_done)
    except MappingError as exc:
        return _finish_task(wait.step_id).submit(job.job_id, None, exc.message)
    if isinstance(arrived, Parked):
        parked.append(arrived)
        return None
    return _finish_task(wait.step_id).submit(job.job_id, dict(arrived))


def as_step(wait: WaitPlan) -> StepPlan:
    """A wait step in the shape of a transformer step, for the errors that name a step."""
    return StepPlan(
        step_id=wait.step_id,
        transformer_id=wait_kind(wait.spec),
        transformer_type="wait",
        target_function="",
        config=TransformerConfig(),
        input_template={},
        depends_on=wait.depends_on,
        upstream=frozenset(),
        policy=resolve_policy(step=None, workflow=None, transformer=None, job_max_retries=0),
        delays=(),
        timeout_seconds=1.0,
    )


def _decided_meanwhile(parked: list[Parked]) -> bool:
    store = WaitStore(shared_store())
    for wait in parked:
        row = store.open_wait(wait.job_id, wait.step_id)
        if row is not None and row["status"] == "decided":
            return True
    return False


def end_state(parked: WaitsParked) -> State[Any]:
    """The state the flow run ends in while the job waits (see the module docstring)."""
    sleeps = [p.deadline for p in parked.parked if p.kind == "sleep" and p.deadline]
    wake = min(sleeps) if sleeps else None
    if parked.later is not None and (wake is None or parked.later.at <= wake):
        return AwaitingRetry(scheduled_time=parked.later.at, message=str(parked.later))
    if wake is not None:
        return Scheduled(scheduled_time=wake, name="Sleeping", message=str(parked))
    if _decided_meanwhile(parked.parked):
        # Decided while other steps were running (the resume found the run not paused).
        return Scheduled(scheduled_time=datetime.now(UTC), name="Resuming", message=str(parked))
    first = parked.parked[0]
    # The wait id, made unique per pause: Prefect refuses a key this flow run has paused
    # with before (a run resumed for another wait pauses again at this one), and a refused
    # pause would leave the run Running, to run the flow again at once.
    key = f"{first.wait_id}:{uuid.uuid4().hex[:12]}"
    name = PAUSED_NAMES[first.kind]
    return Paused(reschedule=True, pause_key=key, name=name, message=str(parked))
