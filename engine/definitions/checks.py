"""Static checks of a workflow definition, run when it is saved (API and `definitions sync`).

`check_definition` reports every problem it finds, not just the first, each with a location
such as ``steps[1].retry.max_retries`` or ``steps[2].input.url.$``.

A path that can read every step's output (``$.steps``, ``$.steps.*``, ``$..x``, ``$``; see
`engine.definitions.mapping.ALL_STEPS`) is allowed in a step's input only when every other step is
upstream of that step, and always in the workflow output.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from pydantic import ValidationError

from engine.definitions import graph, mapping
from engine.definitions.condition_checks import branch_condition_problems
from engine.definitions.fan_out_checks import fan_out_problems, input_roots, unknown_root_hint
from engine.definitions.inputs import object_schema_problems
from engine.definitions.locations import format_location
from engine.definitions.models import RetrySpec, WorkflowDefinition
from engine.definitions.wait_checks import sleep_template, wait_problems
from engine.errors import DefinitionError, MappingError, Problem


def _pydantic_problems(exc: ValidationError) -> list[Problem]:
    return [
        Problem(format_location(error["loc"]), error["msg"])
        for error in exc.errors(include_url=False)
    ]


def _step_id_problems(defn: WorkflowDefinition) -> list[Problem]:
    problems: list[Problem] = []
    first_index: dict[str, int] = {}
    for index, step in enumerate(defn.steps):
        if step.id in first_index:
            problems.append(
                Problem(
                    f"steps[{index}].id",
                    f"duplicate step id {step.id!r} (also steps[{first_index[step.id]}])",
                )
            )
        else:
            first_index[step.id] = index
    return problems


def _depends_on_problems(defn: WorkflowDefinition) -> list[Problem]:
    ids = {step.id for step in defn.steps}
    problems: list[Problem] = []
    for index, step in enumerate(defn.steps):
        seen: set[str] = set()
        for position, dep in enumerate(step.depends_on or []):
            where = f"steps[{index}].depends_on[{position}]"
            if dep == step.id:
                problems.append(Problem(where, f"step {step.id!r} cannot depend on itself"))
            elif dep not in ids:
                problems.append(Problem(where, f"unknown step {dep!r}"))
            elif dep in seen:
                problems.append(Problem(where, f"step {dep!r} is listed twice"))
            seen.add(dep)
    return problems


def _cycle_problems(deps: dict[str, list[str]]) -> list[Problem]:
    # Self-dependencies are reported by the depends_on check already.
    return [
        Problem("steps", f"dependency cycle: {graph.format_cycle(cycle)}")
        for cycle in graph.find_cycles(deps)
        if len(cycle) > 1
    ]


def _path_problems(
    template: Any,
    location: str,
    *,
    ids: Collection[str],
    step_id: str | None,
    allowed: set[str],
    roots: frozenset[str] = mapping.CONTEXT_KEYS,
) -> list[Problem]:
    """Template errors plus step references: to existing steps, and (for a step) upstream ones.

    `allowed` is the set of steps `step_id` may read (its upstream); unused for the output.
    `roots`: the context keys the template may read (a fan-out step's input also has
    `item` and `index`).
    """
    problems = [
        Problem(where, message) for where, message in mapping.template_problems(template, location)
    ]
    for where, expr in mapping.iter_paths(template, location):
        try:
            info = mapping.path_info(expr)
        except MappingError:
            continue  # already reported by template_problems
        unknown_roots = sorted(info.root_keys - roots)
        if unknown_roots:
            problems.append(
                Problem(
                    where,
                    f"path {expr!r} reads {', '.join(map(repr, unknown_roots))}; the context "
                    "has only 'input', 'steps' and 'job'" + unknown_root_hint(unknown_roots),
                )
            )
        for name in sorted(info.steps):
            if name not in ids:
                problems.append(Problem(where, f"path {expr!r} refers to unknown step {name!r}"))
            elif step_id is None:
                continue
            elif name == step_id:
                problems.append(
                    Problem(where, f"path {expr!r}: step {step_id!r} cannot read its own output")
                )
            elif name not in allowed:
                problems.append(
                    Problem(
                        where,
                        f"path {expr!r}: step {name!r} is not upstream of step {step_id!r}; "
                        f"add it to depends_on",
                    )
                )
        if info.all_steps and step_id is not None:
            missing = [name for name in ids if name != step_id and name not in allowed]
            if missing:
                problems.append(
                    Problem(
                        where,
                        f"path {expr!r} can read every step's output, but step {step_id!r} "
                        f"does not run after {', '.join(map(repr, missing))}",
                    )
                )
    return problems


def _mapping_problems(defn: WorkflowDefinition, deps: dict[str, list[str]]) -> list[Problem]:
    ids = list(deps)
    ups = graph.closure(deps)
    problems: list[Problem] = []
    seen: set[str] = set()
    for index, step in enumerate(defn.steps):
        # A repeated id has no place in the graph: only check that its references exist.
        duplicate = step.id in seen
        seen.add(step.id)
        problems += _path_problems(
            step.input,
            f"steps[{index}].input",
            ids=ids,
            step_id=None if duplicate else step.id,
            allowed=ups.get(step.id, set()),
            roots=input_roots(step),
        )
        problems += _path_problems(
            sleep_template(step),
            f"steps[{index}].sleep",
            ids=ids,
            step_id=None if duplicate else step.id,
            allowed=ups.get(step.id, set()),
        )
    if defn.output is not None:
        problems += _path_problems(defn.output, "output", ids=ids, step_id=None, allowed=set())
    return problems


def _transformer_problems(
    defn: WorkflowDefinition, transformer_ids: Collection[str]
) -> list[Problem]:
    known = set(transformer_ids)
    return [
        Problem(f"steps[{index}].transformer", f"unknown transformer {step.transformer!r}")
        for index, step in enumerate(defn.steps)
        if step.transformer is not None and step.transformer not in known
    ]


def retry_spec_problems(spec: RetrySpec | None, location: str) -> list[Problem]:
    """Cross-field retry checks pydantic bounds do not cover (reusable for transformers)."""
    if spec is None:
        return []
    problems: list[Problem] = []
    if (
        spec.max_delay_seconds is not None
        and spec.initial_delay_seconds is not None
        and spec.max_delay_seconds < spec.initial_delay_seconds
    ):
        problems.append(
            Problem(
                f"{location}.max_delay_seconds",
                f"max_delay_seconds ({spec.max_delay_seconds:g}) is less than "
                f"initial_delay_seconds ({spec.initial_delay_seconds:g})",
            )
        )
    return problems


def _retry_problems(defn: WorkflowDefinition) -> list[Problem]:
    problems = retry_spec_problems(defn.retry, "retry")
    for index, step in enumerate(defn.steps):
        problems += retry_spec_problems(step.retry, f"steps[{index}].retry")
    return problems


def input_schema_problems(schema: Any, location: str = "input_schema") -> list[Problem]:
    """The schema must be a valid draft 2020-12 JSON Schema with ``"type": "object"`` on top."""
    return object_schema_problems(schema, location, "the input schema")


def check_definition(
    raw: Any, *, transformer_ids: Collection[str] | None = None
) -> tuple[WorkflowDefinition | None, list[Problem]]:
    """Parse and check a definition; return the model (None if it does not parse) and problems.

    With `transformer_ids`, each step's transformer must be one of them.
    """
    try:
        defn = WorkflowDefinition.model_validate(raw)
    except ValidationError as exc:
        return None, _pydantic_problems(exc)
    deps = graph.dependencies(defn)
    problems = _step_id_problems(defn)
    problems += _depends_on_problems(defn)
    problems += _cycle_problems(deps)
    problems += _mapping_problems(defn, deps)
    if transformer_ids is not None:
        problems += _transformer_problems(defn, transformer_ids)
    problems += _retry_problems(defn)
    problems += input_schema_problems(defn.input_schema)
    problems += wait_problems(defn)
    problems += branch_condition_problems(defn, deps)
    problems += fan_out_problems(defn, deps)
    return defn, problems


def validate_definition(
    raw: Any, *, transformer_ids: Collection[str] | None = None
) -> WorkflowDefinition:
    """The parsed definition; raises DefinitionError listing every problem if there are any."""
    defn, problems = check_definition(raw, transformer_ids=transformer_ids)
    if problems or defn is None:
        raise DefinitionError("workflow definition is invalid", problems)
    return defn
