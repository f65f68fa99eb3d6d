"""The static checks of wait steps, run on save with every other definition check."""

from __future__ import annotations

from typing import Any

import pytest

from engine.definitions.checks import check_definition
from engine.definitions.plan import build_plan
from engine.errors import Problem
from tasks import registry

TRANSFORMERS = {"fetch"}


def definition(*waits: dict[str, Any]) -> dict[str, Any]:
    """`first` (a transformer step), then the given steps."""
    return {"steps": [{"id": "first", "transformer": "fetch"}, *waits]}


VALID = [
    {"id": "review", "approval": {}},
    {
        "id": "review",
        "approval": {
            "form_schema": {"type": "object", "properties": {"ok": {"type": "boolean"}}},
            "deciders": {"claim": "app_metadata.role", "in": ["reviewer"]},
            "forbid_self_approval": True,
            "timeout_seconds": 3600,
            "on_timeout": "reject",
        },
    },
    {"id": "pause", "sleep": {"seconds": 5}},
    {"id": "pause", "sleep": {"until.$": "$.input.at"}},
    {"id": "pause", "sleep": {"until.$": "$.steps.first.body.when"}},
    {"id": "paid", "wait_for_event": {"name": "payment"}},
    {
        "id": "paid",
        "wait_for_event": {
            "name": "payment.done",
            "match": {"$.status": "paid", "$.order.lines[0]": 1},
            "timeout_seconds": 600,
        },
    },
]


@pytest.mark.parametrize("step", VALID)
def test_valid_wait_steps(step: dict[str, Any]) -> None:
    """Each kind of wait, plain and with every option, passes."""
    _defn, problems = check_definition(definition(step), transformer_ids=TRANSFORMERS)
    assert problems == []


WAIT = {"id": "w", "approval": {}}

INVALID: list[tuple[dict[str, Any], str, str]] = [
    ({"id": "w"}, "steps[1]", "a step needs one of"),
    ({"id": "w", "transformer": "fetch", "sleep": {"seconds": 1}}, "steps[1]", "exactly one kind"),
    ({"id": "w", "approval": {}, "sleep": {"seconds": 1}}, "steps[1]", "not approval and sleep"),
    ({**WAIT, "input": {"a": 1}}, "steps[1].input", "takes no input"),
    ({**WAIT, "retry": {"max_retries": 1}}, "steps[1].retry", "not retried"),
    ({**WAIT, "timeout_seconds": 5}, "steps[1].timeout_seconds", "in its wait kind"),
    (
        {"id": "w", "approval": {"form_schema": {"type": "array"}}},
        "steps[1].approval.form_schema.type",
        '"type": "object"',
    ),
    (
        {"id": "w", "approval": {"form_schema": {"type": "object", "minProperties": -1}}},
        "steps[1].approval.form_schema.minProperties",
        "not a valid JSON Schema",
    ),
    (
        {"id": "w", "approval": {"forbid_self_approval": True}},
        "steps[1].approval.forbid_self_approval",
        "without `deciders`",
    ),
    ({"id": "w", "approval": {"on_timeout": "approve"}}, "steps[1].approval.on_timeout", "needs"),
    (
        {"id": "w", "approval": {"timeout_seconds": 0}},
        "steps[1].approval.timeout_seconds",
        "greater than 0",
    ),
    (
        {"id": "w", "approval": {"timeout_seconds": 31 * 86400}},
        "steps[1].approval.timeout_seconds",
        "less than or equal",
    ),
    (
        {"id": "w", "approval": {"deciders": {"claim": "app metadata", "in": ["x"]}}},
        "steps[1].approval.deciders.claim",
        "pattern",
    ),
    (
        {"id": "w", "approval": {"deciders": {"claim": "role", "in": []}}},
        "steps[1].approval.deciders.in",
        "at least 1",
    ),
    ({"id": "w", "approval": {"on_timeout": "later"}}, "steps[1].approval.on_timeout", "'reject'"),
    ({"id": "w", "sleep": {}}, "steps[1].sleep", "exactly one of `seconds` or `until.$`"),
    (
        {"id": "w", "sleep": {"seconds": 1, "until.$": "$.input.at"}},
        "steps[1].sleep",
        "exactly one of",
    ),
    ({"id": "w", "sleep": {"seconds": -1}}, "steps[1].sleep.seconds", "greater than 0"),
    ({"id": "w", "sleep": {"until.$": "input.at"}}, "steps[1].sleep.until.$", "start with '$'"),
    (
        {"id": "w", "sleep": {"until.$": "$.steps.nope.at"}},
        "steps[1].sleep.until.$",
        "unknown step 'nope'",
    ),
    (
        {"id": "w", "depends_on": [], "sleep": {"until.$": "$.steps.first.at"}},
        "steps[1].sleep.until.$",
        "not upstream",
    ),
    ({"id": "w", "sleep": {"until.$": "$.steps.w.at"}}, "steps[1].sleep.until.$", "its own"),
    (
        {"id": "w", "wait_for_event": {"name": "has space"}},
        "steps[1].wait_for_event.name",
        "pattern",
    ),
    (
        {"id": "w", "wait_for_event": {"name": "x", "match": {"status": "paid"}}},
        "steps[1].wait_for_event.match.status",
        "start with '$'",
    ),
    (
        {"id": "w", "wait_for_event": {"name": "x", "match": {"$.items[*]": 1}}},
        "steps[1].wait_for_event.match.$.items[*]",
        "must name one value",
    ),
    ({"id": "w", "wait_for_event": {"match": {}}}, "steps[1].wait_for_event.name", "required"),
]


@pytest.mark.parametrize(("step", "location", "message"), INVALID)
def test_invalid_wait_steps(step: dict[str, Any], location: str, message: str) -> None:
    """Each problem is reported at its location with a message that says what is wrong."""
    _defn, problems = check_definition(definition(step), transformer_ids=TRANSFORMERS)
    matching = [p for p in problems if p.location == location and message in p.message]
    assert matching, problems


def test_every_problem_is_reported_at_once() -> None:
    """Three broken wait steps: three problems in one answer."""
    steps = [{"id": "a"}, {"id": "b", "sleep": {}}, {"id": "c", "approval": {"on_timeout": "fail"}}]
    _defn, problems = check_definition(definition(*steps), transformer_ids=TRANSFORMERS)
    assert [p.location for p in problems] == [
        "steps[1]",
        "steps[2].sleep",
        "steps[3].approval.on_timeout",
    ]
    assert all(isinstance(p, Problem) for p in problems)


def test_the_plan_keeps_wait_steps_apart() -> None:
    """Wait steps are in the order and have their dependencies, but no transformer plan."""
    raw = definition({"id": "review", "approval": {}}, {"id": "pause", "sleep": {"seconds": 1}})
    transformers = {
        "fetch": {
            "type": "http_request",
            "config": {"url_template": "https://example.com"},
            "target_function": "execute-http-request",
        }
    }
    plan = build_plan("wf", raw, transformers, catalog=registry.CATALOG, job_max_retries=0)
    assert plan.order == ("first", "review", "pause")
    assert set(plan.steps) == {"first"} and set(plan.waits) == {"review", "pause"}
    assert plan.depends_on("pause") == ("review",) and plan.depends_on("review") == ("first",)
