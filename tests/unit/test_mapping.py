"""Unit tests of the mapping language (engine.definitions.mapping)."""

from __future__ import annotations

from typing import Any

import pytest

from engine.definitions.mapping import (
    ALL_STEPS,
    compile_path,
    is_singular,
    iter_paths,
    referenced_steps,
    render,
    step_reference,
    template_problems,
)
from engine.errors import MappingError

CONTEXT: dict[str, Any] = {
    "input": {
        "audio_url": "https://example.org/a.mp3",
        "callback_url": "https://example.org/hook",
        "tags": ["a", "b"],
        "items": [{"x": 1, "keep": True}, {"x": 2, "keep": False}],
        "empty": None,
    },
    "steps": {
        "download": {"path": "/data/a.mp3", "size": 10},
        "transcribe": {"segments": [{"text": "hi", "start": 0.0}]},
    },
    "job": {"id": "j-1"},
}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        pytest.param(
            {"url.$": "$.input.audio_url"}, {"url": "https://example.org/a.mp3"}, id="path"
        ),
        pytest.param({"n": 3, "b": True, "z": None}, {"n": 3, "b": True, "z": None}, id="literals"),
        pytest.param({"s": "$.input.audio_url"}, {"s": "$.input.audio_url"}, id="dollar-literal"),
        pytest.param("$.input.audio_url", "$.input.audio_url", id="bare-string-literal"),
        pytest.param(
            {"outer": {"inner.$": "$.steps.download.size", "k": "v"}},
            {"outer": {"inner": 10, "k": "v"}},
            id="nested",
        ),
        pytest.param(
            {"list": [{"a.$": "$.job.id"}, "lit", 1, ["$.x"]]},
            {"list": [{"a": "j-1"}, "lit", 1, ["$.x"]]},
            id="list",
        ),
        pytest.param({"t.$": "$.input.tags[-1]"}, {"t": "b"}, id="negative-index"),
        pytest.param({"e.$": "$.input.empty"}, {"e": None}, id="null-value-found"),
        pytest.param(
            {"seg.$": "$.steps.transcribe.segments[0].text"}, {"seg": "hi"}, id="deep-index"
        ),
        pytest.param({"all.$": "$.input.tags[*]"}, {"all": ["a", "b"]}, id="wildcard-list"),
        pytest.param({"xs.$": "$.input.items[*].x"}, {"xs": [1, 2]}, id="wildcard-field"),
        pytest.param({"none.$": "$.input.nothing[*]"}, {"none": []}, id="non-singular-empty"),
        pytest.param({"s.$": "$.input.tags[0:1]"}, {"s": ["a"]}, id="slice"),
        pytest.param({"kept.$": "$.input.items[?(@.keep == true)].x"}, {"kept": [1]}, id="filter"),
        pytest.param({"sizes.$": "$..size"}, {"sizes": [10]}, id="descendants"),
        pytest.param({"whole.$": "$.job"}, {"whole": {"id": "j-1"}}, id="object-value"),
        pytest.param([{"a.$": "$.job.id"}], [{"a": "j-1"}], id="top-level-list"),
        pytest.param({"$weird": "x"}, {"$weird": "x"}, id="dollar-key-literal"),
    ],
)
def test_render_builds_values(template: Any, expected: Any) -> None:
    """Path keys take values from the context; everything else is copied as a literal."""
    assert render(template, CONTEXT, where="step 'notify'") == expected


@pytest.mark.parametrize(
    ("template", "fragments"),
    [
        pytest.param(
            {"transcript.$": "$.steps.transcribe.words"},
            ["step 'notify'", "'transcript.$'", "$.steps.transcribe.words", "has no key 'words'"],
            id="missing-key",
        ),
        pytest.param(
            {"a": {"b.$": "$.steps.absent"}},
            ["step 'notify'", "'a.b.$'", "$.steps.absent", "$.steps has no key 'absent'"],
            id="missing-step-nested-location",
        ),
        pytest.param(
            {"l": [{"x.$": "$.input.tags[5]"}]},
            ["'l[0].x.$'", "$.input.tags[5]", "2 item(s), no index 5"],
            id="index-out-of-range",
        ),
        pytest.param(
            {"x.$": "$.input.audio_url.host"},
            ["$.input.audio_url is a string, not an object"],
            id="field-of-string",
        ),
        pytest.param(
            {"x.$": "$.input.items.x"},
            ["$.input.items is a list, not an object"],
            id="field-of-list",
        ),
        pytest.param({"a": 1, "a.$": "$.job.id"}, ["both 'a' and 'a.$'"], id="both-keys"),
        pytest.param({"a.$": 5}, ["JSONPath string, not int"], id="non-string-path"),
        pytest.param({".$": "$.job"}, ["needs a name"], id="empty-name"),
        pytest.param({"a.$": "$.["}, ["invalid JSONPath"], id="parse-error"),
        pytest.param({"a.$": "input.url"}, ["must start with '$'"], id="relative-path"),
    ],
)
def test_render_errors_name_where_key_and_path(template: Any, fragments: list[str]) -> None:
    """Mapping failures raise MappingError whose message names the user, key and path."""
    with pytest.raises(MappingError) as info:
        render(template, CONTEXT, where="step 'notify'")
    for fragment in fragments:
        assert fragment in str(info.value)


def test_render_copies_values() -> None:
    """Rendered values are copies: mutating them leaves the context unchanged."""
    result = render({"seg.$": "$.steps.transcribe.segments"}, CONTEXT, where="step 'x'")
    result["seg"].append("mutated")
    assert CONTEXT["steps"]["transcribe"]["segments"] == [{"text": "hi", "start": 0.0}]


@pytest.mark.parametrize(
    ("expr", "singular"),
    [
        ("$", True),
        ("$.input.url", True),
        ("$['steps']['x']", True),
        ("$.a[0].b", True),
        ("$.a[-1]", True),
        ("$.a[*]", False),
        ("$.a.*", False),
        ("$['*']", False),
        ("$.a[0:2]", False),
        ("$.a[0,1]", False),
        ("$['a','b']", False),
        ("$..a", False),
        ("$.a[?(@.b > 1)]", False),
        ("$.steps.a + $.steps.b", False),
    ],
)
def test_is_singular(expr: str, singular: bool) -> None:
    """Only root, single fields and single indexes make a singular path."""
    assert is_singular(expr) is singular


@pytest.mark.parametrize("expr", ["", "$.", "$[", "steps.x", "$.a[?(@.b >)]", "  "])
def test_compile_path_rejects_invalid(expr: str) -> None:
    """Unparsable or relative paths raise MappingError."""
    with pytest.raises(MappingError):
        compile_path(expr)


def test_compile_path_is_cached() -> None:
    """The same expression compiles once."""
    assert compile_path("$.input.cached") is compile_path("$.input.cached")


@pytest.mark.parametrize(
    ("expr", "reference", "names"),
    [
        ("$.steps.download", "download", {"download"}),
        ("$.steps.download.path", "download", {"download"}),
        ("$['steps']['download']", "download", {"download"}),
        ("$.steps['my-step'].x", "my-step", {"my-step"}),
        ("$.input.url", None, set()),
        ("$.job.id", None, set()),
        ("$.steps", ALL_STEPS, {ALL_STEPS}),
        ("$.steps.*", ALL_STEPS, {ALL_STEPS}),
        ("$.steps[*].x", ALL_STEPS, {ALL_STEPS}),
        ("$..x", ALL_STEPS, {ALL_STEPS}),
        ("$", ALL_STEPS, {ALL_STEPS}),
        ("$.*.x", ALL_STEPS, {ALL_STEPS}),
        ("$.steps['a','b']", ALL_STEPS, {"a", "b"}),
        ("$.steps.a + $.steps.b", ALL_STEPS, {"a", "b"}),
        ("$.input..x", None, set()),
    ],
)
def test_step_references(expr: str, reference: str | None, names: set[str]) -> None:
    """Paths name the step outputs they read; anything reaching every step is ALL_STEPS."""
    assert step_reference(expr) == reference
    assert referenced_steps(expr) == names


def test_iter_paths_locations() -> None:
    """iter_paths yields every path key with a dotted/indexed location, depth first."""
    template = {
        "url.$": "$.input.audio_url",
        "lit": "$.not.a.path",
        "items": [{"x.$": "$.job.id"}, "plain"],
        "nested": {"deep": {"y.$": "$.steps.a"}},
        "bad.$": 3,
    }
    assert list(iter_paths(template, "input")) == [
        ("input.url.$", "$.input.audio_url"),
        ("input.items[0].x.$", "$.job.id"),
        ("input.nested.deep.y.$", "$.steps.a"),
    ]


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ({"a.$": "$.x", "b": "$.["}, []),
        ({"a.$": "$.["}, ["a.$"]),
        ({"a": 1, "a.$": "$.x"}, ["a.$"]),
        ({"l": [{"a.$": None}]}, ["l[0].a.$"]),
        ({".$": "$"}, [".$"]),
    ],
)
def test_template_problems_locations(template: Any, expected: list[str]) -> None:
    """template_problems finds bad keys and paths statically, located like iter_paths."""
    assert [where for where, _ in template_problems(template)] == expected
