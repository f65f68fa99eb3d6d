"""Unit tests of the step graph (engine.definitions.graph)."""

from __future__ import annotations

from typing import Any

import pytest

from engine.definitions.graph import dependencies, find_cycles, topological_order, upstream
from engine.definitions.models import WorkflowDefinition
from engine.errors import DefinitionError


def workflow(*steps: tuple[str, list[str] | None]) -> WorkflowDefinition:
    """A definition with the given (id, depends_on) steps, all using one transformer."""
    raw: list[dict[str, Any]] = []
    for step_id, depends_on in steps:
        step: dict[str, Any] = {"id": step_id, "transformer": "noop"}
        if depends_on is not None:
            step["depends_on"] = depends_on
        raw.append(step)
    return WorkflowDefinition.model_validate({"steps": raw})


@pytest.mark.parametrize(
    ("steps", "deps", "ups", "order"),
    [
        pytest.param(
            [("a", None), ("b", None), ("c", None)],
            {"a": [], "b": ["a"], "c": ["b"]},
            {"a": set(), "b": {"a"}, "c": {"a", "b"}},
            ["a", "b", "c"],
            id="implicit-chain",
        ),
        pytest.param(
            [("a", None), ("b", []), ("c", ["a", "b"])],
            {"a": [], "b": [], "c": ["a", "b"]},
            {"a": set(), "b": set(), "c": {"a", "b"}},
            ["a", "b", "c"],
            id="fan-in",
        ),
        pytest.param(
            [("a", []), ("b", ["a"]), ("c", ["a"]), ("d", None)],
            {"a": [], "b": ["a"], "c": ["a"], "d": ["c"]},
            {"a": set(), "b": {"a"}, "c": {"a"}, "d": {"a", "c"}},
            ["a", "b", "c", "d"],
            id="fan-out-then-implicit",
        ),
        pytest.param(
            [("late", ["early"]), ("early", [])],
            {"late": ["early"], "early": []},
            {"late": {"early"}, "early": set()},
            ["early", "late"],
            id="reorders-forward-reference",
        ),
        pytest.param(
            [("a", ["b", "b"]), ("b", [])],
            {"a": ["b"], "b": []},
            {"a": {"b"}, "b": set()},
            ["b", "a"],
            id="duplicate-dependency-dropped",
        ),
    ],
)
def test_dependencies_upstream_order(
    steps: list[tuple[str, list[str] | None]],
    deps: dict[str, list[str]],
    ups: dict[str, set[str]],
    order: list[str],
) -> None:
    """Unset depends_on means the previous step; [] means none; order is stable."""
    defn = workflow(*steps)
    assert dependencies(defn) == deps
    assert upstream(defn) == ups
    assert topological_order(defn) == order


@pytest.mark.parametrize(
    ("deps", "cycles"),
    [
        pytest.param({"a": [], "b": ["a"]}, [], id="acyclic"),
        pytest.param({"a": ["a"]}, [["a"]], id="self"),
        pytest.param({"a": ["b"], "b": ["a"]}, [["a", "b"]], id="two"),
        pytest.param({"a": ["c"], "b": ["a"], "c": ["b"]}, [["a", "c", "b"]], id="three"),
        pytest.param(
            {"a": ["b"], "b": ["a"], "c": ["d"], "d": ["c"], "e": []},
            [["a", "b"], ["c", "d"]],
            id="two-separate",
        ),
        pytest.param({"a": ["ghost"]}, [], id="unknown-ignored"),
    ],
)
def test_find_cycles(deps: dict[str, list[str]], cycles: list[list[str]]) -> None:
    """Each cycle is found once, starting at its earliest node."""
    assert find_cycles(deps) == cycles


def test_topological_order_raises_on_cycle() -> None:
    """A cycle cannot be ordered: DefinitionError names it."""
    defn = workflow(("a", ["b"]), ("b", ["a"]))
    with pytest.raises(DefinitionError) as info:
        topological_order(defn)
    assert [p.message for p in info.value.problems] == ["dependency cycle: a -> b -> a"]


def test_topological_order_raises_on_unknown_dependency() -> None:
    """An unknown dependency cannot be ordered either."""
    with pytest.raises(DefinitionError, match="cannot be ordered"):
        topological_order(workflow(("a", ["zzz"])))


def test_upstream_terminates_on_cycle() -> None:
    """The transitive closure of a cyclic graph still finishes."""
    assert upstream(workflow(("a", ["b"]), ("b", ["a"]))) == {"a": {"a", "b"}, "b": {"a", "b"}}
