"""Static checks of fan-out steps (`for_each`, `max_concurrency`, `on_item_error`).

A step with `for_each` runs its transformer once per item of the list the path yields. Its
`input` mapping reads two more context keys, `$.item` (the current item) and `$.index` (its
position from 0); no other template has them. The `for_each` path itself is a JSONPath over
``{input, steps, job}`` that may read only steps upstream of the step (as its input may).
"""

from __future__ import annotations

from collections.abc import Iterable

from engine.definitions import graph, mapping
from engine.definitions.models import StepDefinition, WorkflowDefinition
from engine.errors import Problem

#: The keys a fan-out step's input mapping reads besides `input`, `steps` and `job`.
FAN_OUT_KEYS = frozenset({"item", "index"})

#: How many items of a fan-out run at once when `max_concurrency` is unset.
DEFAULT_MAX_CONCURRENCY = 10


def input_roots(step: StepDefinition) -> frozenset[str]:
    """The context keys the step's input mapping may read: `item` and `index` too on a
    fan-out step."""
    return mapping.CONTEXT_KEYS | (FAN_OUT_KEYS if step.for_each is not None else frozenset())


def unknown_root_hint(roots: Iterable[str]) -> str:
    """What to add to an 'unknown context key' message when the key is `item` or `index`."""
    if FAN_OUT_KEYS & set(roots):
        return " ('$.item' and '$.index' exist only in the input of a step with for_each)"
    return ""


def _misplaced_problems(index: int, step: StepDefinition) -> list[Problem]:
    """Fan-out fields on a step they do not apply to."""
    where = f"steps[{index}]"
    if step.for_each is not None:
        if step.transformer is None:
            return [
                Problem(
                    f"{where}.for_each",
                    "for_each runs a transformer once per item; this step has no transformer "
                    "(wait and branch steps cannot fan out)",
                )
            ]
        return []
    return [
        Problem(f"{where}.{name}", f"{name} applies only to a step with for_each")
        for name in ("max_concurrency", "on_item_error")
        if name in step.model_fields_set
    ]


def _for_each_path_problems(
    index: int, step: StepDefinition, ids: list[str], allowed: set[str]
) -> list[Problem]:
    """The for_each path parses, reads known context keys, and only upstream steps."""
    from engine.definitions.checks import _path_problems  # checks imports this module

    assert step.for_each is not None
    return _path_problems(
        {"for_each.$": step.for_each},
        f"steps[{index}]",
        ids=ids,
        step_id=step.id,
        allowed=allowed,
    )


def fan_out_problems(defn: WorkflowDefinition, deps: dict[str, list[str]]) -> list[Problem]:
    """Every problem of the definition's fan-out fields, with locations like
    ``steps[2].for_each.$``."""
    ids = list(deps)
    ups = graph.closure(deps)
    problems: list[Problem] = []
    seen: set[str] = set()
    for index, step in enumerate(defn.steps):
        problems += _misplaced_problems(index, step)
        duplicate = step.id in seen  # reported by the step id check; not in the graph
        seen.add(step.id)
        if step.for_each is not None and not duplicate:
            problems += _for_each_path_problems(index, step, ids, ups.get(step.id, set()))
    return problems
