"""Which ready step is skipped, and why (engine.definitions.branching, pure)."""

from __future__ import annotations

from typing import Any

import pytest

from engine.definitions.branching import decide_skip, skip_rules, switch_plan
from engine.definitions.graph import dependencies
from engine.definitions.models import WorkflowDefinition

DEFINITION = WorkflowDefinition.model_validate(
    {
        "steps": [
            {"id": "a", "transformer": "t"},
            {"id": "cond", "transformer": "t", "when": "$.steps.a.n > 1"},
            {"id": "reads", "transformer": "t", "input": {"x.$": "$.steps.cond.v"}},
            {"id": "lists", "transformer": "t", "input": {"x.$": "$.steps.cond[*]"}},
            {
                "id": "either",
                "transformer": "t",
                "depends_on": ["cond"],
                "input": {"x.$": ["$.steps.cond.v", "$.steps.a.n"]},
            },
            {
                "id": "fallback",
                "transformer": "t",
                "depends_on": ["cond"],
                "input": {"x.$": "$.steps.cond.v", "x.default": 0},
            },
            {"id": "broken", "transformer": "t", "input": {"x.$": "$.steps.a.nope"}},
            {
                "id": "route",
                "depends_on": ["a"],
                "switch": {"cases": [{"when": "$.steps.a.n == 1", "then": ["one"]}], "default": []},
            },
            {"id": "one", "transformer": "t", "depends_on": ["route"]},
            {"id": "pause", "sleep": {"until.$": "$.steps.cond.at"}, "depends_on": ["cond"]},
        ]
    }
)
DEPS = dependencies(DEFINITION)
SWITCHES = {
    s.id: switch_plan(s.id, s.switch, tuple(DEPS[s.id])) for s in DEFINITION.steps if s.switch
}
RULES = skip_rules(DEFINITION, SWITCHES)

CASES: list[tuple[str, dict[str, Any], set[str], str | None]] = [
    ("cond", {"a": {"n": 1}}, set(), "condition"),
    ("cond", {"a": {"n": 2}}, set(), None),
    ("cond", {}, set(), "condition"),  # a missing value: the comparison is false
    ("reads", {"a": {"n": 1}}, {"cond"}, "needs"),
    ("reads", {"a": {"n": 1}, "cond": {"v": 1}}, set(), None),
    ("lists", {"a": {"n": 1}}, {"cond"}, None),  # a non-singular path still renders ([])
    ("either", {"a": {"n": 1}}, {"cond"}, None),  # the coalesce finds the other path
    ("fallback", {"a": {"n": 1}}, {"cond"}, None),  # the default applies
    ("broken", {"a": {"n": 1}}, {"cond"}, None),  # fails for another reason: it runs and says
    ("pause", {"a": {"n": 1}}, {"cond"}, "needs"),  # a sleep's until.$ counts as its input
    ("one", {"a": {"n": 1}, "route": {"case": 0, "steps": ["one"]}}, set(), None),
    ("one", {"a": {"n": 2}, "route": {"case": "default", "steps": []}}, set(), "branch"),
    ("one", {"a": {"n": 1}}, {"route"}, "branch"),  # a skipped switch takes no branch
]


@pytest.mark.parametrize(("step_id", "steps", "skipped", "reason"), CASES)
def test_decide_skip(
    step_id: str, steps: dict[str, Any], skipped: set[str], reason: str | None
) -> None:
    """A ready step is skipped for its branch, its condition or its needs, or runs (None)."""
    context = {"input": {}, "steps": steps, "job": {"id": "j"}}
    skip = decide_skip(RULES, step_id, context, skipped)
    assert (skip.reason if skip else None) == reason
    if skip is not None:
        assert skip.event_detail()["reason"] == reason and skip.message


def test_details_name_the_switch_and_the_needed_steps() -> None:
    """A branch skip names the switch and the case it took; a needs skip names the steps."""
    context = {"input": {}, "steps": {"a": {"n": 2}, "route": {"case": "default", "steps": []}}}
    branch = decide_skip(RULES, "one", context, set())
    assert branch is not None and branch.detail == {"switch": "route", "case": "default"}
    needs = decide_skip(RULES, "reads", {"input": {}, "steps": {"a": {}}}, {"cond"})
    assert needs is not None and needs.detail == {"steps": ["cond"]}
