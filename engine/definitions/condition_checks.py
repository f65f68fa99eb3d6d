"""Static checks of conditions (a step's `when`) and of `switch` steps, run on save with the rest
of engine.definitions.checks.

A condition must parse (engine.definitions.conditions) and read only ``input``, ``job`` and the
output of steps upstream of its step, named as ``$.steps.<id>``.

A switch takes exactly one branch by construction: its cases are tried in order, the first
whose condition holds is taken, and when none holds its `default` is. What the checker
guarantees on top of that:

- a `default` is set (else, when no case holds, no branch would run); `[]` says so on purpose.
  It may be left out after a case that is literally `true`, which always holds;
- no case is dead: one whose condition is the same as an earlier case's, or that follows a
  case that is literally `true`, can never be taken and is flagged (a non-empty default after
  a `true` case too);
- every step named in a branch exists, depends directly on the switch step (so it cannot start
  before the branch is chosen) and is named in one branch of that switch at most (so taking
  one branch never runs a step of another);
- a switch step takes no `input`, `retry` or `timeout_seconds` (it runs no transformer).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

from engine.definitions import conditions, graph
from engine.definitions.models import StepDefinition, WorkflowDefinition
from engine.definitions.switch_steps import SwitchSpec
from engine.errors import Problem

#: The top-level keys of the context a condition reads.
_ROOTS = ("input", "steps", "job")


def _reference_problems(
    path: conditions.Path, where: str, step_id: str | None, ids: Collection[str], allowed: set[str]
) -> list[Problem]:
    """A path reads a known root and, under ``steps``, one upstream step by name."""
    expr = path.text
    first = path.segments[0] if path.segments else None
    if first is None or first[0] != "field" or first[1] not in _ROOTS:
        return [
            Problem(
                where,
                f"path {expr!r} must start with $.input, $.steps.<id> or $.job",
            )
        ]
    if first[1] != "steps":
        return []
    name = conditions.step_of(path)
    if name is None:
        return [Problem(where, f"path {expr!r} must name one step: $.steps.<id>...")]
    if name not in ids:
        return [Problem(where, f"path {expr!r} refers to unknown step {name!r}")]
    if step_id is None:
        return []
    if name == step_id:
        return [Problem(where, f"path {expr!r}: step {step_id!r} cannot read its own output")]
    if name not in allowed:
        return [
            Problem(
                where,
                f"path {expr!r}: step {name!r} is not upstream of step {step_id!r}; "
                f"add it to depends_on",
            )
        ]
    return []


def condition_problems(
    expression: str,
    where: str,
    *,
    step_id: str | None,
    ids: Collection[str],
    allowed: set[str],
) -> tuple[conditions.Condition | None, list[Problem]]:
    """The parsed condition (None if it does not parse) and its problems at `where`.

    `step_id` is the step the condition belongs to (None: do not check upstream, e.g. for a
    repeated step id) and `allowed` the steps upstream of it.
    """
    try:
        tree = conditions.parse(expression)
    except conditions.ConditionError as exc:
        return None, [Problem(where, f"invalid condition: {exc.message}")]
    problems: list[Problem] = []
    for path in conditions.paths(tree):
        problems += _reference_problems(path, where, step_id, ids, allowed)
    return tree, problems


def _dead_case_problems(trees: Sequence[conditions.Condition | None], where: str) -> list[Problem]:
    """Cases that can never be taken: a repeat of an earlier case, or after a `true` one."""
    problems: list[Problem] = []
    always: int | None = None
    for index, tree in enumerate(trees):
        here = f"{where}.cases[{index}].when"
        if tree is None:
            continue
        if always is not None:
            problems.append(
                Problem(here, f"this case can never be taken: cases[{always}] is always true")
            )
            continue
        same = next((k for k in range(index) if trees[k] == tree), None)
        if same is not None:
            problems.append(
                Problem(
                    here,
                    f"this case can never be taken: its condition is the same as cases[{same}]",
                )
            )
        elif conditions.is_literally_true(tree):
            always = index
    return problems


def _default_problems(spec: SwitchSpec, where: str, always: int | None) -> list[Problem]:
    if always is None and spec.default is None:
        return [
            Problem(
                f"{where}.default",
                "a switch needs a default: when no case holds, no branch runs "
                "(use [] to run no step then)",
            )
        ]
    if always is not None and spec.default:
        return [
            Problem(
                f"{where}.default",
                f"the default can never be taken: cases[{always}] is always true",
            )
        ]
    return []


def _branch_problems(
    spec: SwitchSpec, switch_id: str, where: str, deps: Mapping[str, Sequence[str]]
) -> list[Problem]:
    """Each named step exists, depends directly on the switch, and is in one branch only."""
    problems: list[Problem] = []
    first_seen: dict[str, str] = {}
    branches = [(f"{where}.cases[{j}].then", case.then) for j, case in enumerate(spec.cases)]
    branches.append((f"{where}.default", spec.default or []))
    for location, names in branches:
        for position, name in enumerate(names):
            here = f"{location}[{position}]"
            if name == switch_id:
                problems.append(Problem(here, "a switch cannot name itself in a branch"))
            elif name not in deps:
                problems.append(Problem(here, f"unknown step {name!r}"))
            elif name in first_seen:
                problems.append(
                    Problem(
                        here,
                        f"step {name!r} is in more than one branch of this switch "
                        f"(also {first_seen[name]})",
                    )
                )
                continue
            elif switch_id not in deps[name]:
                problems.append(
                    Problem(
                        here,
                        f"step {name!r} must depend directly on the switch: add "
                        f"{switch_id!r} to its depends_on",
                    )
                )
            first_seen.setdefault(name, here)
    return problems


def _switch_only_problems(step: StepDefinition, where: str) -> list[Problem]:
    """Fields that mean nothing on a switch step."""
    problems: list[Problem] = []
    if step.input:
        problems.append(Problem(f"{where}.input", "a switch step takes no input"))
    if step.retry is not None:
        problems.append(Problem(f"{where}.retry", "a switch step is not retried"))
    if step.timeout_seconds is not None:
        problems.append(Problem(f"{where}.timeout_seconds", "a switch step takes no timeout"))
    return problems


def _switch_problems(
    step: StepDefinition,
    where: str,
    *,
    step_id: str | None,
    deps: Mapping[str, Sequence[str]],
    allowed: set[str],
) -> list[Problem]:
    spec = step.switch
    assert spec is not None
    # With another kind set too, the kind check reports the step; its fields are that kind's.
    alone = step.transformer is None and step.wait is None
    problems = _switch_only_problems(step, where) if alone else []
    trees: list[conditions.Condition | None] = []
    for index, case in enumerate(spec.cases):
        tree, found = condition_problems(
            case.when,
            f"{where}.switch.cases[{index}].when",
            step_id=step_id,
            ids=deps.keys(),
            allowed=allowed,
        )
        trees.append(tree)
        problems += found
    problems += _dead_case_problems(trees, f"{where}.switch")
    always = next(
        (
            i
            for i, tree in enumerate(trees)
            if tree is not None and conditions.is_literally_true(tree)
        ),
        None,
    )
    problems += _default_problems(spec, f"{where}.switch", always)
    if step_id is not None:
        problems += _branch_problems(spec, step_id, f"{where}.switch", deps)
    return problems


def branch_condition_problems(
    defn: WorkflowDefinition, deps: Mapping[str, Sequence[str]]
) -> list[Problem]:
    """Every problem of the steps' `when` conditions and of the switch steps (`deps`: each
    step's direct dependencies, engine.definitions.graph.dependencies)."""
    ups = graph.closure(deps)
    problems: list[Problem] = []
    seen: set[str] = set()
    for index, step in enumerate(defn.steps):
        # A repeated id has no place in the graph: only check that its references exist.
        step_id = None if step.id in seen else step.id
        seen.add(step.id)
        allowed = ups.get(step.id, set())
        where = f"steps[{index}]"
        if step.when is not None:
            _tree, found = condition_problems(
                step.when, f"{where}.when", step_id=step_id, ids=deps.keys(), allowed=allowed
            )
            problems += found
        if step.switch is not None:
            problems += _switch_problems(step, where, step_id=step_id, deps=deps, allowed=allowed)
    return problems
