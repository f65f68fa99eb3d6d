"""Static checks of wait steps (`approval`, `sleep`, `wait_for_event`, `workflow`), run on save
with the rest of engine.definitions.checks. A sleep's `until.$` is checked there too, as a
mapping path (it may read only upstream steps), and so is a `workflow` step's `input`; its
child workflow and the cycles through children are checked against the other workflows
(engine.definitions.sub_workflow_checks)."""

from __future__ import annotations

from typing import Any

from engine.definitions import mapping
from engine.definitions.inputs import object_schema_problems
from engine.definitions.models import StepDefinition, WorkflowDefinition
from engine.definitions.wait_steps import ApprovalWait, EventWait, SleepWait
from engine.errors import MappingError, Problem

#: The fields that make a step's kind; exactly one is set.
KIND_FIELDS = ("transformer", "approval", "sleep", "wait_for_event", "switch", "workflow")


def _kind_problems(step: StepDefinition, where: str) -> list[Problem]:
    kinds = [name for name in KIND_FIELDS if getattr(step, name) is not None]
    if len(kinds) == 1:
        return []
    if not kinds:
        return [Problem(where, "a step needs one of: " + ", ".join(KIND_FIELDS))]
    return [Problem(where, f"a step has exactly one kind, not {' and '.join(kinds)}")]


def _wait_only_problems(step: StepDefinition, where: str) -> list[Problem]:
    """Fields that mean nothing on a wait step."""
    problems: list[Problem] = []
    if step.input and step.workflow is None:  # a sub-workflow's input is its child's input
        problems.append(Problem(f"{where}.input", "a wait step takes no input"))
    if step.retry is not None:
        problems.append(Problem(f"{where}.retry", "a wait step is not retried"))
    if step.timeout_seconds is not None:
        problems.append(
            Problem(
                f"{where}.timeout_seconds",
                "a sub-workflow step has no timeout (the child workflow's own timeout applies)"
                if step.workflow is not None
                else "a wait step's timeout is set in its wait kind",
            )
        )
    return problems


def form_schema_problems(schema: Any, location: str) -> list[Problem]:
    """A form schema is a valid draft 2020-12 JSON Schema with ``"type": "object"`` on top."""
    return object_schema_problems(schema, location, "a form schema")


def _approval_problems(spec: ApprovalWait, where: str) -> list[Problem]:
    problems: list[Problem] = []
    if spec.form_schema is not None:
        problems += form_schema_problems(spec.form_schema, f"{where}.form_schema")
    if spec.forbid_self_approval and spec.deciders is None:
        problems.append(
            Problem(
                f"{where}.forbid_self_approval",
                "without `deciders` only the owner decides, so the owner cannot be forbidden",
            )
        )
    if spec.timeout_seconds is None and "on_timeout" in spec.model_fields_set:
        problems.append(Problem(f"{where}.on_timeout", "on_timeout needs timeout_seconds"))
    return problems


def _sleep_problems(spec: SleepWait, where: str) -> list[Problem]:
    if (spec.seconds is None) == (spec.until is None):
        return [Problem(where, "a sleep has exactly one of `seconds` or `until.$`")]
    return []  # `until.$` is checked as a mapping path (engine.definitions.checks)


def match_problems(match: dict[str, Any] | None, location: str) -> list[Problem]:
    """Each key of an event's `match` is a singular JSONPath over the payload."""
    problems: list[Problem] = []
    for key in match or {}:
        where = f"{location}.{key}"
        try:
            mapping.compile_path(key)
        except MappingError as exc:
            problems.append(Problem(where, exc.message))
            continue
        if not mapping.is_singular(key):
            problems.append(
                Problem(where, f"match path {key!r} must name one value (no wildcards)")
            )
    return problems


def _event_problems(spec: EventWait, where: str) -> list[Problem]:
    return match_problems(spec.match, f"{where}.match")


def wait_problems(defn: WorkflowDefinition) -> list[Problem]:
    """Every problem of the steps' kinds and of each wait step's own fields."""
    problems: list[Problem] = []
    for index, step in enumerate(defn.steps):
        where = f"steps[{index}]"
        problems += _kind_problems(step, where)
        if step.wait is None or step.transformer is not None:
            continue
        problems += _wait_only_problems(step, where)
        if step.approval is not None:
            problems += _approval_problems(step.approval, f"{where}.approval")
        elif step.sleep is not None:
            problems += _sleep_problems(step.sleep, f"{where}.sleep")
        elif step.wait_for_event is not None:
            problems += _event_problems(step.wait_for_event, f"{where}.wait_for_event")
    return problems


def sleep_template(step: StepDefinition) -> dict[str, Any]:
    """The mapping template of a sleep's `until.$` (empty when the step has none)."""
    if step.sleep is None or step.sleep.until is None:
        return {}
    return {"until.$": step.sleep.until}
