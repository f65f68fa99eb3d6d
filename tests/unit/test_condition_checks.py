"""The static checks of `when` conditions and switch steps, run on save with the other checks."""

from __future__ import annotations

from typing import Any

import pytest

from engine.definitions.checks import check_definition
from engine.definitions.plan import build_plan
from tasks import registry

TRANSFORMERS = {"fetch"}


def fetch(step_id: str, **fields: Any) -> dict[str, Any]:
    """A transformer step."""
    return {"id": step_id, "transformer": "fetch", **fields}


def switch(step_id: str, cases: list[tuple[str, list[str]]], **fields: Any) -> dict[str, Any]:
    """A switch step with `cases` ((condition, steps) pairs) and the given fields."""
    spec: dict[str, Any] = {"cases": [{"when": when, "then": then} for when, then in cases]}
    if "default" in fields:
        spec["default"] = fields.pop("default")
    return {"id": step_id, "switch": spec, **fields}


def routed(*extra: dict[str, Any], default: list[str] | None = None) -> dict[str, Any]:
    """detect -> route (switch: long -> [summarise], else [skim]) -> summarise | skim."""
    route = switch(
        "route",
        [("$.steps.detect.words > 100", ["summarise"])],
        **({"default": default} if default is not None else {}),
    )
    return {
        "steps": [
            fetch("detect"),
            route,
            fetch("summarise", depends_on=["route"]),
            fetch("skim", depends_on=["route"]),
            *extra,
        ]
    }


VALID: list[dict[str, Any]] = [
    {"steps": [fetch("a"), fetch("b", when="$.steps.a.status == 200")]},
    {"steps": [fetch("a", when="exists($.input.url) and $.job.id != ''")]},
    {"steps": [{"id": "w", "approval": {}, "when": "$.input.review"}]},
    {"steps": [{"id": "s", "sleep": {"seconds": 1}, "when": "false"}]},
    routed(default=["skim"]),
    routed(default=[]),
    # a step in two switches' branches; a join after both branches
    {
        "steps": [
            fetch("a"),
            switch("r1", [("$.steps.a.x == 1", ["b"])], default=[], depends_on=["a"]),
            switch("r2", [("$.steps.a.y == 1", ["b"])], default=[], depends_on=["a"]),
            fetch("b", depends_on=["r1", "r2"]),
            fetch("join", depends_on=["b"]),
        ]
    },
    # a default may be left out after a case that is always true
    {"steps": [fetch("a"), switch("r", [("$.steps.a.x", ["b"]), ("true", ["c"])]),
               fetch("b", depends_on=["r"]), fetch("c", depends_on=["r"])]},
    # a switch may have a condition of its own
    {"steps": [fetch("a"), switch("r", [("true", ["b"])], when="$.steps.a.ok"),
               fetch("b", depends_on=["r"])]},
]  # fmt: skip


@pytest.mark.parametrize("definition", VALID)
def test_valid_conditions_and_switches(definition: dict[str, Any]) -> None:
    """Conditions over input, job and upstream steps, and well-formed switches, pass."""
    _defn, problems = check_definition(definition, transformer_ids=TRANSFORMERS)
    assert [(p.location, p.message) for p in problems] == []


INVALID: list[tuple[dict[str, Any], str, str]] = [
    # conditions
    (
        {"steps": [fetch("a", when="$.input.x >")]},
        "steps[0].when",
        "invalid condition: expected a value or a path, found the end of the expression "
        "at column 12",
    ),
    ({"steps": [fetch("a", when="$.x == 1")]}, "steps[0].when", "must start with $.input"),
    ({"steps": [fetch("a", when="exists($.steps)")]}, "steps[0].when", "must name one step"),
    ({"steps": [fetch("a", when="$ == 1")]}, "steps[0].when", "must start with $.input"),
    (
        {"steps": [fetch("a", when="$.steps.nope.x == 1")]},
        "steps[0].when",
        "path '$.steps.nope.x' refers to unknown step 'nope'",
    ),
    (
        {"steps": [fetch("a", when="$.steps.a.x == 1")]},
        "steps[0].when",
        "path '$.steps.a.x': step 'a' cannot read its own output",
    ),
    (
        {"steps": [fetch("a"), fetch("b", depends_on=[], when="$.steps.a.x == 1")]},
        "steps[1].when",
        "path '$.steps.a.x': step 'a' is not upstream of step 'b'; add it to depends_on",
    ),
    ({"steps": [fetch("a", when="x" * 2001)]}, "steps[0].when", "at most 2000 characters"),
    # switch cases
    (
        routed(switch("r2", [("$.steps.detect.words >", ["x"])], default=[])),
        "steps[4].switch.cases[0].when",
        "invalid condition",
    ),
    (
        routed(switch("r2", [("$.steps.later.x == 1", ["x"])], default=[]), fetch("later")),
        "steps[4].switch.cases[0].when",
        "step 'later' is not upstream of step 'r2'",
    ),
    (routed(), "steps[1].switch.default", "when no case holds, no branch runs"),
    (
        {"steps": [fetch("a"), switch("r", [("$.steps.a.x == 1", ["b"]),
                                             ("$.steps.a['x'] == 1", ["c"])], default=[]),
                   fetch("b", depends_on=["r"]), fetch("c", depends_on=["r"])]},
        "steps[1].switch.cases[1].when",
        "this case can never be taken: its condition is the same as cases[0]",
    ),
    (
        {"steps": [fetch("a"), switch("r", [("true", ["b"]), ("$.steps.a.x", ["c"])]),
                   fetch("b", depends_on=["r"]), fetch("c", depends_on=["r"])]},
        "steps[1].switch.cases[1].when",
        "this case can never be taken: cases[0] is always true",
    ),
    (
        {"steps": [fetch("a"), switch("r", [("true", ["b"])], default=["c"]),
                   fetch("b", depends_on=["r"]), fetch("c", depends_on=["r"])]},
        "steps[1].switch.default",
        "the default can never be taken: cases[0] is always true",
    ),
    # branches
    (routed(default=["ghost"]), "steps[1].switch.default[0]", "unknown step 'ghost'"),
    (
        routed(fetch("late", depends_on=["detect"]), default=["late"]),
        "steps[1].switch.default[0]",
        "step 'late' must depend directly on the switch: add 'route' to its depends_on",
    ),
    (
        routed(fetch("after", depends_on=["skim"]), default=["after"]),
        "steps[1].switch.default[0]",
        "must depend directly on the switch",
    ),
    (
        routed(default=["summarise"]),
        "steps[1].switch.default[0]",
        "step 'summarise' is in more than one branch of this switch "
        "(also steps[1].switch.cases[0].then[0])",
    ),
    (routed(default=["route"]), "steps[1].switch.default[0]", "cannot name itself"),
    # fields a switch does not take
    (
        {"steps": [fetch("a"), switch("r", [("true", ["a"])], input={"x": 1})]},
        "steps[1].input",
        "a switch step takes no input",
    ),
    (
        {"steps": [fetch("a"), switch("r", [("true", ["a"])], retry={"max_retries": 1})]},
        "steps[1].retry",
        "a switch step is not retried",
    ),
    (
        {"steps": [fetch("a"), switch("r", [("true", ["a"])], timeout_seconds=5)]},
        "steps[1].timeout_seconds",
        "a switch step takes no timeout",
    ),
    (
        {"steps": [{**switch("r", [("true", ["r"])]), "transformer": "fetch"}]},
        "steps[0]",
        "a step has exactly one kind, not transformer and switch",
    ),
    ({"steps": [{"id": "r", "switch": {"cases": []}}]}, "steps[0].switch.cases", "at least 1"),
]  # fmt: skip


@pytest.mark.parametrize(("definition", "location", "message"), INVALID)
def test_invalid_conditions_and_switches(
    definition: dict[str, Any], location: str, message: str
) -> None:
    """Each mistake is reported at its location with a message saying what is wrong."""
    _defn, problems = check_definition(definition, transformer_ids=TRANSFORMERS)
    found = [(p.location, p.message) for p in problems]
    assert any(loc == location and message in text for loc, text in found), found


def test_plan_holds_switches_and_their_dependencies() -> None:
    """The plan resolves a switch step (no transformer) with its parsed cases; its branch
    steps wait for it."""
    transformers = {
        "fetch": {
            "type": "http_request",
            "config": {"url_template": "https://example.com"},
            "target_function": "execute-http-request",
        }
    }
    plan = build_plan(
        "wf",
        routed(default=["skim"]),
        transformers,
        catalog=registry.CATALOG,
        job_max_retries=0,
    )
    route = plan.switches["route"]
    assert plan.depends_on("route") == ("detect",)
    assert plan.depends_on("summarise") == ("route",)
    assert "route" not in plan.steps
    assert route.choose({"steps": {"detect": {"words": 500}}}) == {
        "case": 0,
        "steps": ["summarise"],
    }
    assert route.choose({"steps": {"detect": {"words": 5}}}) == {
        "case": "default",
        "steps": ["skim"],
    }
    assert route.choose({"steps": {}}) == {"case": "default", "steps": ["skim"]}
