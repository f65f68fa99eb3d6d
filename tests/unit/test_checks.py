"""Unit tests of the static definition checks (engine.definitions.checks)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from examples import DESIGN_EXAMPLE

from engine.definitions.checks import check_definition, validate_definition
from engine.errors import DefinitionError, Problem

TRANSFORMERS = {"http-download-audio", "gemini-timestamp-transcriber", "webhook-notify"}

#: The example from DESIGN.md: valid.
EXAMPLE: dict[str, Any] = DESIGN_EXAMPLE


def edited(path: str, value: Any) -> dict[str, Any]:
    """A copy of EXAMPLE with the value at a dotted path (list indexes as numbers) replaced."""
    raw = copy.deepcopy(EXAMPLE)
    parts = path.split(".")
    target: Any = raw
    for part in parts[:-1]:
        target = target[int(part)] if isinstance(target, list) else target[part]
    last = parts[-1]
    if isinstance(target, list):
        target[int(last)] = value
    else:
        target[last] = value
    return raw


def test_example_is_valid() -> None:
    """The shipped example passes every check."""
    defn, problems = check_definition(EXAMPLE, transformer_ids=TRANSFORMERS)
    assert problems == []
    assert defn is not None
    assert validate_definition(EXAMPLE, transformer_ids=TRANSFORMERS) == defn


@pytest.mark.parametrize(
    ("raw", "location", "fragment"),
    [
        # pydantic-level problems
        pytest.param([], "(root)", "valid dictionary", id="not-an-object"),
        pytest.param(edited("steps", []), "steps", "at least 1", id="no-steps"),
        pytest.param(
            edited("steps.1.retry.max_retries", 99),
            "steps[1].retry.max_retries",
            "less than or equal to 25",
            id="retry-range",
        ),
        pytest.param(
            edited("retry.jitter", 2), "retry.jitter", "less than or equal to 1", id="jitter-range"
        ),
        pytest.param(
            edited("retry.strategy", "random"), "retry.strategy", "'fixed'", id="strategy"
        ),
        pytest.param(
            edited("retry.retry_on", ["boom"]), "retry.retry_on[0]", "timeout", id="retry-on-kind"
        ),
        pytest.param(
            edited("steps.0.id", "1bad id"), "steps[0].id", "pattern", id="step-id-pattern"
        ),
        pytest.param(
            edited("steps.0.extra", 1), "steps[0].extra", "Extra inputs", id="extra-field"
        ),
        # static checks
        pytest.param(
            edited("steps.1.id", "download"),
            "steps[1].id",
            "duplicate step id 'download' (also steps[0])",
            id="duplicate-id",
        ),
        pytest.param(
            edited("steps.2.depends_on", ["nope"]),
            "steps[2].depends_on[0]",
            "unknown step 'nope'",
            id="unknown-dependency",
        ),
        pytest.param(
            edited("steps.2.depends_on", ["notify"]),
            "steps[2].depends_on[0]",
            "cannot depend on itself",
            id="self-dependency",
        ),
        pytest.param(
            edited("steps.0.depends_on", ["notify"]),
            "steps",
            "dependency cycle: download -> notify -> transcribe -> download",
            id="cycle",
        ),
        pytest.param(
            edited("steps.1.input", {"audio.$": "$.steps[download"}),
            "steps[1].input.audio.$",
            "invalid JSONPath",
            id="bad-path-input",
        ),
        pytest.param(
            edited("output", {"x.$": "$.steps.["}),
            "output.x.$",
            "invalid JSONPath",
            id="bad-path-output",
        ),
        pytest.param(
            edited("steps.1.input", {"audio": 1, "audio.$": "$.steps.download"}),
            "steps[1].input.audio.$",
            "both 'audio' and 'audio.$'",
            id="both-keys",
        ),
        pytest.param(
            edited("steps.1.input", {"audio.$": 4}),
            "steps[1].input.audio.$",
            "JSONPath string",
            id="non-string-path",
        ),
        pytest.param(
            edited("steps.1.input", {"audio.$": "$.steps.ghost"}),
            "steps[1].input.audio.$",
            "unknown step 'ghost'",
            id="unknown-step-ref",
        ),
        pytest.param(
            edited("steps.1.input", {"audio.$": "$.steps.transcribe"}),
            "steps[1].input.audio.$",
            "cannot read its own output",
            id="self-ref",
        ),
        pytest.param(
            edited("steps.0.input", {"x.$": "$.steps.notify.ok"}),
            "steps[0].input.x.$",
            "step 'notify' is not upstream of step 'download'",
            id="downstream-ref",
        ),
        pytest.param(
            edited("steps.2.depends_on", ["download"]),
            "steps[2].input.transcript.$",
            "step 'transcribe' is not upstream of step 'notify'",
            id="parallel-ref",
        ),
        pytest.param(
            edited("steps.1.input", {"all.$": "$.steps.*"}),
            "steps[1].input.all.$",
            "does not run after 'notify'",
            id="all-steps-ref",
        ),
        pytest.param(
            edited("steps.0.input", {"u.$": "$.inputs.url"}),
            "steps[0].input.u.$",
            "reads 'inputs'",
            id="unknown-root-key",
        ),
        pytest.param(
            edited("output", {"x.$": "$.steps.ghost"}),
            "output.x.$",
            "unknown step 'ghost'",
            id="output-unknown-step",
        ),
        pytest.param(
            edited("steps.2.transformer", "no-such"),
            "steps[2].transformer",
            "unknown transformer 'no-such'",
            id="unknown-transformer",
        ),
        pytest.param(
            edited("steps.1.retry", {"initial_delay_seconds": 10, "max_delay_seconds": 5}),
            "steps[1].retry.max_delay_seconds",
            "less than initial_delay_seconds",
            id="max-below-initial",
        ),
        pytest.param(
            edited("input_schema", {"type": "object", "required": "x"}),
            "input_schema.required",
            "not a valid JSON Schema",
            id="invalid-schema",
        ),
        pytest.param(
            edited("input_schema", {"type": "string"}),
            "input_schema.type",
            '"type": "object"',
            id="schema-not-object",
        ),
    ],
)
def test_each_problem_kind(raw: Any, location: str, fragment: str) -> None:
    """Each kind of problem is reported at its location with a readable message."""
    _, problems = check_definition(raw, transformer_ids=TRANSFORMERS)
    matching = [p for p in problems if p.location == location]
    assert matching, f"no problem at {location!r}: {problems}"
    assert any(fragment in p.message for p in matching), matching


@pytest.mark.parametrize(
    ("step_input", "output"),
    [
        pytest.param({"all.$": "$.steps.*"}, None, id="all-steps-when-all-upstream"),
        pytest.param(
            {"x.$": "$.steps.download.path", "lit": "$.steps.nope"}, None, id="literal-dollar"
        ),
        pytest.param(
            {"j.$": "$.job.id", "l": [{"i.$": "$.input.audio_url"}]}, None, id="job-and-list"
        ),
        pytest.param({}, {"all.$": "$.steps", "w.$": "$..segments"}, id="output-reads-everything"),
    ],
)
def test_allowed_references(step_input: dict[str, Any], output: dict[str, Any] | None) -> None:
    """Reading every step is fine once all others are upstream, and always in the output."""
    raw = edited("steps.2.input", step_input)
    raw["output"] = output
    assert check_definition(raw, transformer_ids=TRANSFORMERS)[1] == []


def test_transformers_unchecked_without_ids() -> None:
    """Without transformer_ids, transformer names are not checked."""
    assert check_definition(edited("steps.0.transformer", "anything"))[1] == []


def test_every_problem_is_reported() -> None:
    """A definition with several problems reports all of them, in check order."""
    raw = copy.deepcopy(EXAMPLE)
    raw["steps"][1]["id"] = "download"  # duplicate id; notify now reads a missing step
    raw["steps"][0]["depends_on"] = ["notify"]  # cycle
    raw["steps"][0]["transformer"] = "missing"
    raw["retry"]["initial_delay_seconds"] = 400
    raw["input_schema"] = {"type": "array"}
    _, problems = check_definition(raw, transformer_ids=TRANSFORMERS)
    assert problems == [
        Problem("steps[1].id", "duplicate step id 'download' (also steps[0])"),
        Problem("steps", "dependency cycle: download -> notify -> download"),
        Problem(
            "steps[2].input.transcript.$",
            "path '$.steps.transcribe.segments' refers to unknown step 'transcribe'",
        ),
        Problem(
            "output.transcript.$", "path '$.steps.transcribe' refers to unknown step 'transcribe'"
        ),
        Problem("steps[0].transformer", "unknown transformer 'missing'"),
        Problem(
            "retry.max_delay_seconds",
            "max_delay_seconds (300) is less than initial_delay_seconds (400)",
        ),
        Problem("input_schema.type", 'the input schema must have "type": "object" at the top'),
    ]


def test_pydantic_errors_all_reported() -> None:
    """Parse errors are all reported at once, with dotted locations."""
    raw = copy.deepcopy(EXAMPLE)
    raw["steps"][0]["retry"] = {"max_retries": -1, "backoff_factor": 0.5}
    raw["steps"][2]["timeout_seconds"] = 0
    _, problems = check_definition(raw)
    assert [p.location for p in problems] == [
        "steps[0].retry.max_retries",
        "steps[0].retry.backoff_factor",
        "steps[2].timeout_seconds",
    ]


def test_validate_definition_raises_with_problems() -> None:
    """validate_definition raises DefinitionError listing every problem."""
    with pytest.raises(DefinitionError) as info:
        validate_definition(edited("steps.2.transformer", "x"), transformer_ids=TRANSFORMERS)
    assert info.value.message == "workflow definition is invalid"
    assert info.value.problems == [Problem("steps[2].transformer", "unknown transformer 'x'")]
    assert "steps[2].transformer" in str(info.value)
