"""Checks of sub-workflow steps across workflows (pure), run on save next to check_definition:
each `workflow` step's child must exist (and its `version`, when given), and no workflow may
reach itself through its children (a cycle would start children without end).

The graph has one node per workflow id and an edge for every `workflow` step: the saved
definitions' steps, and the stored definitions' steps for workflows not being saved. A step
pinned to a version is followed through the workflow's current definition (the one a save
writes or the table holds), which refuses a cycle through any version still being changed.
Problems are located at ``steps[i].workflow.workflow_id`` of the step that starts the cycle.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from engine.errors import Problem


@dataclass(frozen=True)
class Call:
    """One `workflow` step: its index in `steps`, the child workflow and its pinned version."""

    index: int
    workflow_id: str
    version: int | None


def calls_of(definition: Any) -> list[Call]:
    """The `workflow` steps of a raw definition; anything malformed is skipped (the
    definition's own checks report it)."""
    steps = definition.get("steps") if isinstance(definition, Mapping) else None
    calls: list[Call] = []
    for index, step in enumerate(steps if isinstance(steps, list) else []):
        call = step.get("workflow") if isinstance(step, Mapping) else None
        if not isinstance(call, Mapping) or not isinstance(call.get("workflow_id"), str):
            continue
        version = call.get("version")
        calls.append(Call(index, call["workflow_id"], version if type(version) is int else None))
    return calls


def _path(graph: Mapping[str, list[str]], start: str, goal: str) -> list[str] | None:
    """A path of workflow ids from `start` to `goal` (both included), or None."""
    stack: list[tuple[str, list[str]]] = [(start, [start])]
    seen: set[str] = set()
    while stack:
        node, path = stack.pop()
        if node == goal:
            return path
        if node in seen:
            continue
        seen.add(node)
        for child in reversed(graph.get(node, [])):
            stack.append((child, [*path, child]))
    return None


def cycle_of(graph: Mapping[str, list[str]], workflow_id: str, child: str) -> list[str] | None:
    """The cycle `workflow_id -> child -> ... -> workflow_id` through a step, or None."""
    path = _path(graph, child, workflow_id)
    return None if path is None else [workflow_id, *path]


def _existence_problem(
    call: Call, saved: Collection[str], versions: Mapping[str, Collection[int]]
) -> str | None:
    """Why the child of `call` does not exist (None: it does). A saved workflow may be named at
    the version the save is about to write (its latest stored version plus one)."""
    stored = versions.get(call.workflow_id)
    if stored is None and call.workflow_id not in saved:
        return f"unknown workflow {call.workflow_id!r}"
    if call.version is None:
        return None
    allowed = set(stored or ())
    if call.workflow_id in saved:
        allowed.add(max(allowed, default=0) + 1)
    if call.version not in allowed:
        return f"workflow {call.workflow_id!r} has no version {call.version}"
    return None


def sub_workflow_problems(
    saved: Mapping[str, Any],
    stored: Mapping[str, Any] | None = None,
    versions: Mapping[str, Collection[int]] | None = None,
) -> dict[str, list[Problem]]:
    """The problems of each saved workflow's `workflow` steps, by workflow id.

    `saved`: the raw definitions being saved, by id; `stored`: the definitions already in the
    tables, by id (those being saved are replaced by their new definition); `versions`: the
    stored versions of every workflow, by id. Without `versions`, only cycles are checked (a
    check of files alone cannot know which workflows exist).
    """
    definitions = {**(stored or {}), **saved}
    graph = {wid: [c.workflow_id for c in calls_of(d)] for wid, d in definitions.items()}
    out: dict[str, list[Problem]] = {}
    for wid, definition in saved.items():
        problems: list[Problem] = []
        for call in calls_of(definition):
            where = f"steps[{call.index}].workflow.workflow_id"
            if versions is not None:
                missing = _existence_problem(call, saved.keys(), versions)
                if missing is not None:
                    problems.append(Problem(where, missing))
                    continue
            cycle = cycle_of(graph, wid, call.workflow_id)
            if cycle is not None:
                problems.append(
                    Problem(where, "workflow cycle: " + " -> ".join(repr(w) for w in cycle))
                )
        if problems:
            out[wid] = problems
    return out


@dataclass(frozen=True)
class StoredWorkflows:
    """What the tables hold, for the checks of a save: each workflow's current definition and
    its version numbers, by id."""

    definitions: Mapping[str, Any]
    versions: Mapping[str, Collection[int]]
