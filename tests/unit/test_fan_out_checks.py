"""Unit tests of the fan-out checks (engine.definitions.fan_out_checks, via check_definition)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from engine.definitions.checks import check_definition
from engine.definitions.fan_out_checks import DEFAULT_MAX_CONCURRENCY
from engine.errors import Problem

TRANSFORMERS = {"list-files", "transcribe", "notify"}

#: A valid fan-out: list files, transcribe each, notify with every transcript.
BASE: dict[str, Any] = {
    "steps": [
        {"id": "list", "transformer": "list-files", "input": {"folder.$": "$.input.folder"}},
        {
            "id": "transcribe",
            "transformer": "transcribe",
            "for_each": "$.steps.list.files",
            "max_concurrency": 5,
            "on_item_error": "collect",
            "input": {"url.$": "$.item.url", "position.$": "$.index", "lang.$": "$.input.lang"},
        },
        {
            "id": "notify",
            "transformer": "notify",
            "input": {"transcripts.$": "$.steps.transcribe.results"},
        },
    ]
}


def variant(step: int, **changes: Any) -> dict[str, Any]:
    """BASE with the fields of steps[step] changed (a value of None deletes the field)."""
    raw = copy.deepcopy(BASE)
    for name, value in changes.items():
        if value is None:
            raw["steps"][step].pop(name, None)
        else:
            raw["steps"][step][name] = value
    return raw


def problems_of(raw: dict[str, Any]) -> list[Problem]:
    """Every problem check_definition finds in `raw`."""
    _defn, problems = check_definition(raw, transformer_ids=TRANSFORMERS)
    return problems


def test_base_fan_out_is_valid() -> None:
    """A for_each over an upstream step's list, whose input reads $.item and $.index, passes;
    unset fields take their defaults."""
    assert problems_of(BASE) == []
    defn, _ = check_definition(variant(1, max_concurrency=None, on_item_error=None))
    assert defn is not None
    assert defn.steps[1].max_concurrency is None  # the runtime default applies
    assert defn.steps[1].on_item_error == "fail"
    assert DEFAULT_MAX_CONCURRENCY == 10


@pytest.mark.parametrize(
    "for_each",
    [
        pytest.param("$.input.files", id="job-input"),
        pytest.param("$.input.files[*].url", id="non-singular"),
        pytest.param("$.steps.list.files[?(@.size > 10)]", id="filter"),
    ],
)
def test_valid_for_each_paths(for_each: str) -> None:
    """Any parsable path over input or upstream steps is accepted (its value is checked to be
    a list when the step runs)."""
    assert problems_of(variant(1, for_each=for_each)) == []


@pytest.mark.parametrize(
    ("raw", "location", "fragment"),
    [
        pytest.param(
            variant(1, for_each="$.steps.list.files[?("),
            "steps[1].for_each.$",
            "invalid JSONPath",
            id="unparsable",
        ),
        pytest.param(
            variant(1, for_each="steps.list"),
            "steps[1].for_each.$",
            "must start with '$'",
            id="no-dollar",
        ),
        pytest.param(
            variant(1, for_each="$.steps.notify.items"),
            "steps[1].for_each.$",
            "not upstream",
            id="downstream-step",
        ),
        pytest.param(
            variant(1, for_each="$.steps.transcribe.files"),
            "steps[1].for_each.$",
            "cannot read its own output",
            id="own-output",
        ),
        pytest.param(
            variant(1, for_each="$.steps.nope.files"),
            "steps[1].for_each.$",
            "unknown step 'nope'",
            id="unknown-step",
        ),
        pytest.param(
            variant(1, for_each="$.item.files"),
            "steps[1].for_each.$",
            "exist only in the input of a step with for_each",
            id="item-in-for-each",
        ),
        pytest.param(
            variant(1, for_each="$.steps.*"),
            "steps[1].for_each.$",
            "can read every step's output",
            id="all-steps",
        ),
        pytest.param(
            variant(2, input={"url.$": "$.item.url"}),
            "steps[2].input.url.$",
            "exist only in the input of a step with for_each",
            id="item-without-for-each",
        ),
        pytest.param(
            variant(2, input={"n.$": "$.index"}),
            "steps[2].input.n.$",
            "'index'",
            id="index-without-for-each",
        ),
        pytest.param(
            {**BASE, "output": {"x.$": "$.item"}},
            "output.x.$",
            "exist only in the input of a step with for_each",
            id="item-in-output",
        ),
        pytest.param(
            variant(2, max_concurrency=3),
            "steps[2].max_concurrency",
            "only to a step with for_each",
            id="concurrency-without-for-each",
        ),
        pytest.param(
            variant(2, on_item_error="collect"),
            "steps[2].on_item_error",
            "only to a step with for_each",
            id="on-item-error-without-for-each",
        ),
        pytest.param(
            variant(1, max_concurrency=0),
            "steps[1].max_concurrency",
            "greater than or equal to 1",
            id="concurrency-zero",
        ),
        pytest.param(
            variant(1, max_concurrency=101),
            "steps[1].max_concurrency",
            "less than or equal to 100",
            id="concurrency-too-high",
        ),
        pytest.param(
            variant(1, on_item_error="ignore"),
            "steps[1].on_item_error",
            "'fail' or 'collect'",
            id="on-item-error-value",
        ),
        pytest.param(
            variant(1, transformer=None, input=None, approval={"timeout_seconds": 60}),
            "steps[1].for_each",
            "has no transformer",
            id="wait-step",
        ),
        pytest.param(
            variant(
                1,
                transformer=None,
                input=None,
                switch={"cases": [{"when": "$.input.lang == 'fr'", "then": ["notify"]}]},
            ),
            "steps[1].for_each",
            "has no transformer",
            id="switch-step",
        ),
    ],
)
def test_fan_out_problems(raw: dict[str, Any], location: str, fragment: str) -> None:
    """Each bad fan-out is reported at its location with a message naming the problem."""
    problems = problems_of(raw)
    matching = [p for p in problems if p.location == location and fragment in p.message]
    assert matching, problems
