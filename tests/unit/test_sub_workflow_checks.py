"""Sub-workflow steps on save: the step's own checks (check_definition), and the checks across
workflows (engine.definitions.sub_workflow_checks): the child must exist, with its version
when one is pinned, and no workflow may reach itself through its children."""

from __future__ import annotations

from typing import Any

import pytest

from engine.definitions.checks import check_definition
from engine.definitions.sub_workflow_checks import Call, calls_of, cycle_of, sub_workflow_problems
from engine.definitions.wait_checks import KIND_FIELDS
from engine.definitions.wait_steps import WorkflowCall, wait_kind
from engine.errors import Problem


def calling(
    *children: str | tuple[str, int], first: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A definition whose steps call `children` in order (a (id, version) pair pins one)."""
    steps: list[dict[str, Any]] = [first] if first else []
    for n, child in enumerate(children):
        wid, version = child if isinstance(child, tuple) else (child, None)
        call: dict[str, Any] = {"workflow_id": wid}
        if version is not None:
            call["version"] = version
        steps.append({"id": f"call{n}", "workflow": call, "depends_on": []})
    return {"steps": steps}


LEAF: dict[str, Any] = {"steps": [{"id": "a", "sleep": {"seconds": 1}}]}


@pytest.mark.parametrize(
    ("step", "expected"),
    [
        pytest.param(
            {"id": "n", "workflow": {"workflow_id": "notify_v1"}, "input": {"to.$": "$.input.to"}},
            [],
            id="input-mapping-allowed",
        ),
        pytest.param(
            {"id": "n", "workflow": {"workflow_id": "notify_v1", "version": 2}},
            [],
            id="pinned-version",
        ),
        pytest.param(
            {"id": "n", "workflow": {"workflow_id": "notify_v1"}, "retry": {"max_retries": 1}},
            [Problem("steps[0].retry", "a wait step is not retried")],
            id="no-retry",
        ),
        pytest.param(
            {"id": "n", "workflow": {"workflow_id": "notify_v1"}, "timeout_seconds": 5},
            [
                Problem(
                    "steps[0].timeout_seconds",
                    "a sub-workflow step has no timeout (the child workflow's own timeout applies)",
                )
            ],
            id="no-step-timeout",
        ),
        pytest.param(
            {"id": "n", "workflow": {"workflow_id": "notify_v1"}, "input": {"x.$": "$.steps.n"}},
            [
                Problem(
                    "steps[0].input.x.$", "path '$.steps.n': step 'n' cannot read its own output"
                )
            ],
            id="input-paths-checked",
        ),
        pytest.param(
            {"id": "n", "workflow": {"workflow_id": "notify_v1"}, "transformer": "t"},
            [Problem("steps[0]", "a step has exactly one kind, not transformer and workflow")],
            id="one-kind",
        ),
    ],
)
def test_workflow_step_checks(step: dict[str, Any], expected: list[Problem]) -> None:
    """A `workflow` step takes an input mapping (checked like a transformer step's), but no
    retry and no step timeout; it is one kind among the others."""
    _defn, problems = check_definition({"steps": [step]})
    assert problems == expected


@pytest.mark.parametrize(
    ("call", "message"),
    [
        ({"workflow_id": "bad id"}, "String should match pattern"),
        ({"workflow_id": "x", "version": 0}, "Input should be greater than or equal to 1"),
        ({"workflow_id": "x", "extra": 1}, "Extra inputs are not permitted"),
        ({}, "Field required"),
    ],
)
def test_workflow_call_fields(call: dict[str, Any], message: str) -> None:
    """The call's own fields are validated by the model, located under `workflow`."""
    _defn, problems = check_definition({"steps": [{"id": "n", "workflow": call}]})
    assert problems and all(p.location.startswith("steps[0].workflow") for p in problems)
    assert any(message in p.message for p in problems)


def test_workflow_is_a_wait_kind() -> None:
    """`workflow` is a step kind and the wait kind `workflow` (jobs.waiting_for, job_waits)."""
    assert "workflow" in KIND_FIELDS
    assert wait_kind(WorkflowCall(workflow_id="x")) == "workflow"


def test_calls_of_skips_malformed_steps() -> None:
    """Only well-formed `workflow` steps are edges; a malformed one is left to its checks."""
    raw = {
        "steps": [
            {"id": "a", "workflow": {"workflow_id": "b", "version": 3}},
            {"id": "b", "workflow": {"workflow_id": 7}},
            {"id": "c", "workflow": "x"},
            "not a step",
            {"id": "d", "workflow": {"workflow_id": "e", "version": "2"}},
        ]
    }
    assert calls_of(raw) == [Call(0, "b", 3), Call(4, "e", None)]
    assert calls_of(None) == [] and calls_of({"steps": 5}) == []


CYCLES = [
    pytest.param({"a": calling("a")}, {"a": [("steps[0]", "'a' -> 'a'")]}, id="self"),
    pytest.param(
        {"a": calling("b"), "b": calling("a")},
        {"a": [("steps[0]", "'a' -> 'b' -> 'a'")], "b": [("steps[0]", "'b' -> 'a' -> 'b'")]},
        id="two",
    ),
    pytest.param(
        {"a": calling("leaf", "b"), "b": calling("c"), "c": calling("a"), "leaf": LEAF},
        {
            "a": [("steps[1]", "'a' -> 'b' -> 'c' -> 'a'")],
            "b": [("steps[0]", "'b' -> 'c' -> 'a' -> 'b'")],
            "c": [("steps[0]", "'c' -> 'a' -> 'b' -> 'c'")],
        },
        id="three-with-a-leaf",
    ),
    pytest.param(
        {"a": calling("b", "c"), "b": calling("c"), "c": LEAF},
        {},
        id="diamond-is-no-cycle",
    ),
]


@pytest.mark.parametrize(("saved", "expected"), CYCLES)
def test_cycles_among_saved_workflows(
    saved: dict[str, Any], expected: dict[str, list[tuple[str, str]]]
) -> None:
    """Every step that starts a cycle is flagged at `steps[i].workflow.workflow_id`, naming
    the whole cycle; a workflow reached twice without a cycle is fine."""
    found = sub_workflow_problems(saved)
    assert {
        wid: [(p.location.removesuffix(".workflow.workflow_id"), p.message) for p in ps]
        for wid, ps in found.items()
    } == {
        wid: [(where, f"workflow cycle: {cycle}") for where, cycle in items]
        for wid, items in expected.items()
    }
    for ps in found.values():
        assert all(p.location.endswith(".workflow.workflow_id") for p in ps)


def test_a_cycle_through_stored_workflows() -> None:
    """The stored definitions are followed too: saving `a -> b` when the table holds
    `b -> c -> a` is refused; the saved definition replaces the stored one of its id."""
    stored = {"b": calling("c"), "c": calling("a"), "a": LEAF}
    versions = {"a": [1], "b": [1], "c": [1, 2]}
    found = sub_workflow_problems({"a": calling("b")}, stored, versions)
    assert found == {
        "a": [Problem("steps[0].workflow.workflow_id", "workflow cycle: 'a' -> 'b' -> 'c' -> 'a'")]
    }
    # Saving c without its call to a breaks the cycle.
    assert sub_workflow_problems({"a": calling("b"), "c": LEAF}, stored, versions) == {}


@pytest.mark.parametrize(
    ("child", "expected"),
    [
        pytest.param("stored", None, id="stored"),
        pytest.param(("stored", 2), None, id="stored-version"),
        pytest.param(("stored", 3), "workflow 'stored' has no version 3", id="missing-version"),
        pytest.param("missing", "unknown workflow 'missing'", id="missing-workflow"),
        pytest.param(("missing", 1), "unknown workflow 'missing'", id="missing-pinned"),
        pytest.param("new", None, id="saved-alongside"),
        pytest.param(("new", 1), None, id="saved-alongside-version-1"),
        pytest.param(("new", 2), "workflow 'new' has no version 2", id="saved-new-version-2"),
        pytest.param(("changed", 3), None, id="saved-next-version"),
        pytest.param(("changed", 4), "workflow 'changed' has no version 4", id="past-next"),
    ],
)
def test_the_child_must_exist(child: str | tuple[str, int], expected: str | None) -> None:
    """With the stored versions, a child must be stored or saved alongside, and a pinned
    version stored or the one the save writes next (latest + 1)."""
    saved = {"parent": calling(child), "new": LEAF, "changed": LEAF}
    versions = {"stored": [1, 2], "changed": [1, 2]}
    found = sub_workflow_problems(saved, {"stored": LEAF, "changed": LEAF}, versions)
    if expected is None:
        assert found == {}
    else:
        assert found == {"parent": [Problem("steps[0].workflow.workflow_id", expected)]}


def test_without_versions_existence_is_not_checked() -> None:
    """A check of files alone (no database) flags cycles only: an unknown child may be
    stored."""
    assert sub_workflow_problems({"a": calling("elsewhere")}) == {}


def test_cycle_of_finds_the_path() -> None:
    """cycle_of gives the cycle through one edge, from and back to the workflow."""
    graph = {"a": ["x", "b"], "b": ["c"], "c": ["a"], "x": []}
    assert cycle_of(graph, "a", "b") == ["a", "b", "c", "a"]
    assert cycle_of(graph, "a", "x") is None
