"""Defaults (`name.default`) and coalesce lists (`name.$: [paths]`) in the mapping language,
at render time and in the static checks."""

from __future__ import annotations

from typing import Any

import pytest

from engine.definitions.checks import check_definition
from engine.definitions.mapping import PathField, iter_fields, iter_paths, render
from engine.definitions.mapping import template_problems as problems_of
from engine.errors import MappingError

CONTEXT: dict[str, Any] = {
    "input": {"lang": "fr", "empty": None, "tags": ["a", "b"]},
    "steps": {"long": {"text": "a long text"}, "count": {"n": 0}},
    "job": {"id": "j-1"},
}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        pytest.param(
            {"l.$": "$.input.lang", "l.default": "en"}, {"l": "fr"}, id="found-ignores-default"
        ),
        pytest.param({"l.$": "$.input.hint", "l.default": "en"}, {"l": "en"}, id="missing-key"),
        pytest.param({"l.$": "$.steps.short.text", "l.default": ""}, {"l": ""}, id="missing-step"),
        pytest.param({"e.$": "$.input.empty", "e.default": "x"}, {"e": None}, id="null-is-a-match"),
        pytest.param({"n.$": "$.steps.count.n", "n.default": 5}, {"n": 0}, id="falsy-is-a-match"),
        pytest.param({"t.$": "$.input.tags[9]", "t.default": None}, {"t": None}, id="null-default"),
        pytest.param(
            {"d.$": "$.input.x", "d.default": {"k.$": "$.input.lang", "v": [1]}},
            {"d": {"k.$": "$.input.lang", "v": [1]}},
            id="default-is-literal",
        ),
        pytest.param(
            {"all.$": "$.input.nothing[*]", "all.default": ["z"]},
            {"all": ["z"]},
            id="non-singular-empty-takes-default",
        ),
        pytest.param(
            {"all.$": "$.input.tags[*]", "all.default": []},
            {"all": ["a", "b"]},
            id="non-singular-match-ignores-default",
        ),
        pytest.param(
            {"t.$": ["$.steps.short.text", "$.steps.long.text"]},
            {"t": "a long text"},
            id="coalesce-second",
        ),
        pytest.param(
            {"t.$": ["$.steps.long.text", "$.input.lang"]},
            {"t": "a long text"},
            id="coalesce-first-wins",
        ),
        pytest.param(
            {"t.$": ["$.steps.short.text", "$.steps.other.text"], "t.default": ""},
            {"t": ""},
            id="coalesce-default",
        ),
        pytest.param(
            {"t.$": ["$.input.none[*]", "$.input.tags[*]"]},
            {"t": ["a", "b"]},
            id="coalesce-skips-empty-non-singular",
        ),
        pytest.param({"t.$": ["$.input.lang"]}, {"t": "fr"}, id="coalesce-of-one"),
        pytest.param(
            {"outer": [{"x.$": "$.input.y", "x.default": 1, "k": "v"}]},
            {"outer": [{"x": 1, "k": "v"}]},
            id="nested-in-list",
        ),
    ],
)
def test_defaults_and_coalesce_render(template: Any, expected: Any) -> None:
    """A default stands in only when its path matches nothing; a coalesce list takes the first
    path that matches (null and falsy values do match), else the default."""
    assert render(template, CONTEXT, where="step 'join'") == expected


@pytest.mark.parametrize(
    ("template", "fragments"),
    [
        pytest.param(
            {"t.$": ["$.steps.short.text", "$.steps.other.text"]},
            [
                "step 'join'",
                "'t.$'",
                "none of the paths matched",
                "$.steps.short.text",
                "$.steps has no key 'other'",
            ],
            id="coalesce-without-default",
        ),
        pytest.param(
            {"t.$": ["$.input.none[*]"]},
            ["none of the paths matched", "no match"],
            id="coalesce-of-empty-non-singular",
        ),
        pytest.param(
            {"x.default": 1}, ["'x.default'", "'x.$', which is not set"], id="default-alone"
        ),
        pytest.param(
            {"x": 1, "x.default": 2}, ["'x.$', which is not set"], id="default-next-to-literal"
        ),
        pytest.param({"t.$": []}, ["needs at least one JSONPath"], id="empty-list"),
        pytest.param({"t.$": ["$.input.lang", 3]}, ["'t.$[1]'", "not int"], id="non-string-item"),
        pytest.param({"t.$": ["$.["]}, ["'t.$[0]'", "invalid JSONPath"], id="bad-item"),
        pytest.param({".default": 1}, ["needs a name"], id="empty-default-name"),
    ],
)
def test_render_errors(template: Any, fragments: list[str]) -> None:
    """What cannot render raises MappingError naming the step, the key and the paths."""
    with pytest.raises(MappingError) as info:
        render(template, CONTEXT, where="step 'join'")
    for fragment in fragments:
        assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ({"l.$": "$.input.hint", "l.default": "en"}, []),
        ({"t.$": ["$.a", "$.b"], "t.default": None}, []),
        ({"x.default": 1}, ["input.x.default"]),
        ({"a": {"x.default": 1, "y.$": "$.a"}}, ["input.a.x.default"]),
        ({"t.$": []}, ["input.t.$"]),
        ({"t.$": ["$.a", "$.[", 4]}, ["input.t.$[1]", "input.t.$[2]"]),
        ({"t.$": {"p": "$.a"}}, ["input.t.$"]),
        # A default is literal: what it holds is not checked as a template.
        ({"t.$": "$.a", "t.default": {"u.$": "$.["}}, []),
    ],
)
def test_template_problems(template: Any, expected: list[str]) -> None:
    """template_problems locates a lone default, an empty or malformed coalesce list and
    each unparsable path of a list."""
    assert [where for where, _ in problems_of(template, "input")] == expected


def test_iter_paths_and_fields_cover_coalesce_lists() -> None:
    """Every path of a coalesce is yielded with its index; defaults are not visited."""
    template = {
        "t.$": ["$.steps.a.x", "$.steps.b.x"],
        "t.default": {"inner.$": "$.steps.c"},
        "u.$": "$.input.u",
    }
    assert list(iter_paths(template, "input")) == [
        ("input.t.$[0]", "$.steps.a.x"),
        ("input.t.$[1]", "$.steps.b.x"),
        ("input.u.$", "$.input.u"),
    ]
    assert list(iter_fields(template, "input")) == [
        PathField(
            "input.t.$", (("input.t.$[0]", "$.steps.a.x"), ("input.t.$[1]", "$.steps.b.x")), True
        ),
        PathField("input.u.$", (("input.u.$", "$.input.u"),), False),
    ]


def _definition(join_input: dict[str, Any], depends_on: list[str]) -> dict[str, Any]:
    return {
        "steps": [
            {"id": "short", "transformer": "t", "depends_on": []},
            {"id": "long", "transformer": "t", "depends_on": []},
            {"id": "join", "transformer": "t", "depends_on": depends_on, "input": join_input},
        ],
        "output": {"text.$": ["$.steps.join.text", "$.steps.long"], "text.default": ""},
    }


@pytest.mark.parametrize(
    ("join_input", "depends_on", "expected"),
    [
        pytest.param(
            {"text.$": ["$.steps.short.text", "$.steps.long.text"], "text.default": ""},
            ["short", "long"],
            [],
            id="valid-join",
        ),
        pytest.param(
            {"text.$": ["$.steps.short.text", "$.steps.gone.text"]},
            ["short", "long"],
            [("steps[2].input.text.$[1]", "unknown step 'gone'")],
            id="unknown-step-in-list",
        ),
        pytest.param(
            {"text.$": ["$.steps.short.text", "$.steps.long.text"]},
            ["short"],
            [("steps[2].input.text.$[1]", "'long' is not upstream of step 'join'")],
            id="not-upstream-in-list",
        ),
        pytest.param(
            {"text.default": "x"},
            ["short", "long"],
            [("steps[2].input.text.default", "'text.$', which is not set")],
            id="default-without-path",
        ),
        pytest.param(
            {"text.$": ["$.steps.short.text", "$.oops.x"]},
            ["short", "long"],
            [("steps[2].input.text.$[1]", "reads 'oops'")],
            id="unknown-root-in-list",
        ),
    ],
)
def test_definition_checks(
    join_input: dict[str, Any], depends_on: list[str], expected: list[tuple[str, str]]
) -> None:
    """The definition checks apply to every path of a coalesce and to lone defaults, with the
    location of the offending path."""
    defn, problems = check_definition(_definition(join_input, depends_on))
    assert defn is not None
    assert len(problems) == len(expected), problems
    for problem, (location, fragment) in zip(problems, expected, strict=True):
        assert problem.location == location
        assert fragment in problem.message
