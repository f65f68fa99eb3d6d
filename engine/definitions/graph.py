"""The step graph of a workflow: direct dependencies, transitive upstream sets, run order.

A step with ``depends_on`` unset waits for the previous step in the list (the first step waits
for nothing); ``depends_on: []`` starts at once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from engine.definitions.models import WorkflowDefinition
from engine.errors import DefinitionError, Problem


def dependencies(defn: WorkflowDefinition) -> dict[str, list[str]]:
    """Direct dependencies of each step, in list order, as declared (names are not checked).

    A repeated step id (which the checks report) keeps its first step's dependencies, so the
    first step's edges are not hidden by a later one.
    """
    deps: dict[str, list[str]] = {}
    previous: str | None = None
    for step in defn.steps:
        if step.id not in deps:
            # Keep the declared order but drop repeats.
            declared = step.depends_on
            implicit = [previous] if previous is not None else []
            deps[step.id] = implicit if declared is None else list(dict.fromkeys(declared))
        previous = step.id
    return deps


def closure(deps: Mapping[str, Sequence[str]]) -> dict[str, set[str]]:
    """Transitive upstream set of each node; unknown names are kept, cycles do not loop."""
    result: dict[str, set[str]] = {}
    for node in deps:
        seen: set[str] = set()
        stack = list(deps[node])
        while stack:
            current = stack.pop()
            if current in seen:
                continue
            seen.add(current)
            stack.extend(deps.get(current, ()))
        result[node] = seen
    return result


def upstream(defn: WorkflowDefinition) -> dict[str, set[str]]:
    """Every step each step waits for, directly or through others."""
    return closure(dependencies(defn))


def find_cycles(deps: Mapping[str, Sequence[str]]) -> list[list[str]]:
    """Dependency cycles, each as the list of its nodes (a self-dependency is ``[x]``).

    One cycle per back edge found by a depth-first search in mapping order; names missing from
    `deps` are ignored. Each cycle starts at its node that comes first in `deps`.
    """
    order = {name: index for index, name in enumerate(deps)}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []
    cycles: list[list[str]] = []
    seen_keys: set[tuple[str, ...]] = set()

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for dep in deps.get(node, ()):
            if dep not in order:
                continue
            if state.get(dep) == 1:
                cycle = path[path.index(dep) :]
                # Rotate so equal cycles found from different starts compare equal.
                start = min(range(len(cycle)), key=lambda i: order[cycle[i]])
                rotated = cycle[start:] + cycle[:start]
                key = tuple(rotated)
                if key not in seen_keys:
                    seen_keys.add(key)
                    cycles.append(rotated)
            elif dep not in state:
                visit(dep)
        path.pop()
        state[node] = 2

    for name in deps:
        if name not in state:
            visit(name)
    return cycles


def format_cycle(cycle: Sequence[str]) -> str:
    """Text of a cycle such as ``a -> b -> a``."""
    return " -> ".join([*cycle, cycle[0]])


def topological_order(defn: WorkflowDefinition) -> list[str]:
    """Step ids in an order where every step follows its dependencies.

    Stable: among the steps ready to run, the one earliest in the list comes first. Raises
    DefinitionError for an unknown dependency or a cycle.
    """
    deps = dependencies(defn)
    problems = [
        Problem(f"steps[{index}].depends_on", f"unknown step {dep!r}")
        for index, (name, names) in enumerate(deps.items())
        for dep in names
        if dep not in deps
    ]
    if problems:
        raise DefinitionError("workflow steps cannot be ordered", problems)
    done: set[str] = set()
    order: list[str] = []
    pending = list(deps)
    while pending:
        ready = next((name for name in pending if all(d in done for d in deps[name])), None)
        if ready is None:
            raise DefinitionError(
                "workflow steps cannot be ordered",
                [
                    Problem("steps", f"dependency cycle: {format_cycle(c)}")
                    for c in find_cycles(deps)
                ],
            )
        pending.remove(ready)
        done.add(ready)
        order.append(ready)
    return order
