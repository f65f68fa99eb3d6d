"""Skipped steps and switch steps in the flow (`_execute` in flows/run_workflow.py).

Before a ready step starts, `Skips.start` decides whether it is skipped
(engine.definitions.branching: its `when` is false, a switch took another branch, or its
input needs a skipped step's output). A skipped step:

- runs as a Prefect task run named after the step whose state is Completed, named "Skipped",
  with the reason as its message; the task writes a `state_history` entry (``running`` at the
  step, ``skipped: <reason>``) and a `step_skipped` event whose detail gives ``reason``
  (``condition``, ``branch`` or ``needs``) and ``message``;
- has no output in step_data (so the default final_result lacks it) and counts as finished
  for `ready_steps` once that task run ends: its dependents go on (and are decided in turn).

A switch step runs as a task run of its name too: it evaluates its cases over the stored
outputs and stores ``{"case", "steps"}`` as its output, like a finished step.

Resume: a resubmitted or resumed flow run decides again from the same stored outputs, so the
same steps are skipped. The skipped steps show again as Skipped task runs of the new run
(Prefect shows what each run did), but their history entries and `step_skipped` events are
written once per run of the job: skips recorded since the job's last rerun are not recorded
again.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from prefect import Task, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State
from prefect.futures import PrefectFuture
from prefect.states import Completed
from prefect.utilities.annotations import quote

from engine.db.connection import shared_store
from engine.db.job_writes import Transition
from engine.db.store import JobStore
from engine.definitions.branching import (
    REASONS,
    Skip,
    SwitchPlan,
    decide_skip,
    skip_rules,
)
from engine.definitions.plan import StepPlan, WorkflowPlan
from engine.definitions.retry import resolve_policy
from engine.definitions.transformers import TransformerConfig
from engine.errors import ErrorKind, StepError
from engine.jobs.transitions import JobStatus
from flows import waiting
from flows.run_step import JobInfo

#: The name of a skipped step's Completed task-run state.
SKIPPED_STATE = "Skipped"


@task(cache_policy=NO_CACHE, persist_result=False)
def skip_step(job: JobInfo, skip: Skip, record: bool) -> State[Any]:
    """Record that a step is skipped and end as Completed named "Skipped". Unless `record` is
    False (an earlier flow run wrote it), one transition writes a `state_history` entry
    (running, the step, ``skipped: <reason>``) and the `step_skipped` event."""
    if record:
        shared_store().transition(
            job.job_id,
            Transition(
                status=JobStatus.RUNNING, step_id=skip.step_id, detail={"skipped": skip.reason}
            ),
            flow_run_id=job.flow_run_id,
            event=("step_skipped", skip.event_detail()),
        )
    return Completed(name=SKIPPED_STATE, message=f"step '{skip.step_id}' skipped: {skip.message}")


@task(cache_policy=NO_CACHE, persist_result=False)
def run_switch(job: JobInfo, switch: SwitchPlan, steps_done: dict[str, Any]) -> Any:
    """Choose a switch step's branch and store ``{"case", "steps"}`` as its output."""
    store = shared_store()
    if not store.transition(
        job.job_id,
        Transition(status=JobStatus.RUNNING, step_id=switch.step_id, attempt=1),
        flow_run_id=job.flow_run_id,
        event=("step_started", {"kind": "switch"}),
    ):
        raise StepError(
            ErrorKind.INTERNAL,
            "the job is no longer owned by this flow run (finished or resubmitted)",
        )
    output = switch.choose(job.mapping_context(steps_done))
    store.save_step_output(
        job.job_id, switch.step_id, output, attempt=1, detail={"kind": "switch", **output}
    )
    return output


@lru_cache(maxsize=1024)
def _named(kind: str, name: str) -> Task[..., Any]:
    """The skip or switch task with the step's name (the Prefect UI shows one per step)."""
    base = skip_step if kind == "skip" else run_switch
    return base.with_options(name=name, task_run_name=name)


def recorded_skips(store: JobStore, job_id: str) -> set[str]:
    """The steps whose skip was recorded since the job's last rerun (by an earlier flow run)."""
    found: set[str] = set()
    for event in store.events(job_id):
        if event["kind"] == "rerun":
            found.clear()
        elif event["kind"] == "step_skipped" and event.get("step_id"):
            reason = (event.get("detail") or {}).get("reason")
            found |= {str(event["step_id"])} if reason in REASONS else set()
    return found


class Skips:
    """The skip decisions of one flow run of a job."""

    def __init__(self, job: JobInfo, plan: WorkflowPlan) -> None:
        self.plan = plan
        self.rules = skip_rules(plan.definition, plan.switches)
        self.decided: set[str] = set()  # skipped, their task run maybe still running
        self.finished: set[str] = set()  # skipped, their task run ended
        # Any run may be a resumed one (even with no output stored: a skip, then a wait), so
        # a workflow that can skip reads the skips recorded so far (one query per flow run).
        active = self.rules.active
        self.recorded = recorded_skips(shared_store(), job.job_id) if active else set()

    def done(self, steps_done: dict[str, Any]) -> set[str]:
        """The steps finished for `ready_steps`: with an output, or skipped."""
        return set(steps_done) | self.finished

    def start(
        self, job: JobInfo, step_id: str, steps_done: dict[str, Any]
    ) -> PrefectFuture[Any] | None:
        """The task run of a ready step that is skipped or is a switch; None for any other
        step, which starts as usual."""
        if self.rules.active:
            skip = decide_skip(self.rules, step_id, job.mapping_context(steps_done), self.decided)
            if skip is not None:
                self.decided.add(step_id)
                record = step_id not in self.recorded
                return _named("skip", step_id).submit(quote(job), quote(skip), record)
        if step_id in self.plan.switches:
            switch = self.plan.switches[step_id]
            return _named("switch", step_id).submit(
                quote(job), quote(switch), quote(dict(steps_done))
            )
        return None

    def keep_output(
        self, step_id: str, future: PrefectFuture[Any], steps_done: dict[str, Any]
    ) -> None:
        """A step's task run completed: its output goes to `steps_done`, unless the step was
        skipped (it has none, and now counts as finished)."""
        if step_id in self.decided:
            self.finished.add(step_id)
        else:
            steps_done[step_id] = future.result()

    def step_plan(self, step_id: str) -> StepPlan:
        """Any step of the plan in the shape of a transformer step, for the errors that name a
        step (a switch step names `switch` as its transformer)."""
        if step_id in self.plan.steps:
            return self.plan.steps[step_id]
        if step_id in self.plan.waits:
            return waiting.as_step(self.plan.waits[step_id])
        return StepPlan(
            step_id=step_id,
            transformer_id="switch",
            transformer_type="switch",
            target_function="",
            config=TransformerConfig(),
            input_template={},
            depends_on=self.plan.depends_on(step_id),
            upstream=frozenset(),
            policy=resolve_policy(step=None, workflow=None, transformer=None, job_max_retries=0),
            delays=(),
            timeout_seconds=1.0,
        )
