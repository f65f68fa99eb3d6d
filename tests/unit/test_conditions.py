"""The condition language of `when` and switch cases: parsing, evaluation and step references."""

from __future__ import annotations

from typing import Any

import pytest

from engine.definitions.conditions import (
    MAX_DEPTH,
    MAX_LENGTH,
    ConditionError,
    evaluate,
    is_literally_true,
    parse,
    referenced_steps,
)

CONTEXT: dict[str, Any] = {
    "input": {
        "webhook_url": "https://example.test/hook",
        "lang": "fr",
        "tags": ["a", "b"],
        "count": 3,
        "ratio": 0.5,
        "flag": True,
        "off": False,
        "nothing": None,
        "odd key": {"x": 1},
        "items": [{"n": 1}, {"n": 2}],
        "exists": "a field named like a keyword",
    },
    "steps": {"transcribe": {"word_count": 120, "text": "hello"}},
    "job": {"id": "j1"},
}

HOLDS: list[tuple[str, bool]] = [
    ("$.steps.transcribe.word_count > 100 and exists($.input.webhook_url)", True),
    ("$.steps.transcribe.word_count > 200 and exists($.input.webhook_url)", False),
    ("$.steps.transcribe.word_count > 200 or exists($.input.webhook_url)", True),
    ("not $.input.count == 3", False),
    ("not not $.input.count == 3", True),
    ("($.input.count == 1 or $.input.count == 3) and $.input.lang == 'fr'", True),
    ("$.input.count == 1 or $.input.count == 3 and $.input.lang == 'en'", False),  # and binds
    # comparisons
    ("$.input.count == 3.0", True),
    ("$.input.count != 4", True),
    ("$.input.count >= 3", True),
    ("$.input.count <= 2", False),
    ("$.input.ratio < 1", True),
    ("$.input.count > -1", True),
    ("$.input.lang < 'g'", True),
    ('$.input.lang == "fr"', True),
    ("$.input.nothing == null", True),
    ("$.input.flag == true", True),
    ("$.input.off == false", True),
    ("$.input.tags == ['a', 'b']", True),
    ("$.input.items[1].n == 2", True),
    ("$.input.items[-1].n == 2", True),
    ("$['input']['odd key'].x == 1", True),
    ('$["input"]["odd key"]["x"] == 1', True),
    ("$.input.exists == 'a field named like a keyword'", True),
    ("1e2 == 100", True),
    ("'it\\'s' == \"it's\"", True),
    # in
    ("$.input.lang in ['en', 'fr']", True),
    ("$.input.lang in ['en', 'de']", False),
    ("'a' in $.input.tags", True),
    ("'c' in $.input.tags", False),
    ("$.input.count in [$.input.count, 7]", True),
    ("'fr' in $.input.lang", False),  # the right side is not a list
    # incompatible types: false, never an error
    ("$.input.lang < 3", False),
    ("$.input.lang > 3", False),
    ("$.input.nothing < 1", False),
    ("$.input.tags > 1", False),
    ("$.input.flag == 1", False),  # a boolean is not a number
    ("$.input.count == '3'", False),
    ("$.input.count != '3'", True),
    # missing values: every comparison is false, exists is false
    ("$.input.absent == 1", False),
    ("$.input.absent != 1", False),
    ("$.input.absent == null", False),
    ("not $.input.absent == 1", True),
    ("exists($.input.absent)", False),
    ("exists($.input.nothing)", True),  # a null value exists
    ("exists($.steps.later.text)", False),
    ("$.input.items[5].n == 1", False),
    ("$.input.lang.x == 1", False),  # a string has no fields
    ("$.input.absent in [1]", False),
    ("1 in [$.input.absent, 1]", False),  # a list literal with a missing item is missing
    # bare operands: hold only for the boolean true
    ("$.input.flag", True),
    ("$.input.off", False),
    ("$.input.count", False),
    ("$.input.absent", False),
    ("true", True),
    ("false", False),
    ("not false", True),
]


@pytest.mark.parametrize(("expression", "expected"), HOLDS)
def test_evaluate(expression: str, expected: bool) -> None:
    """Each expression holds, or not, over the context (see the module's evaluation rules)."""
    assert evaluate(parse(expression), CONTEXT) is expected


INVALID: list[tuple[str, str, int]] = [
    ("", "empty condition", 1),
    ("   ", "empty condition", 1),
    ("$.a >", "expected a value or a path, found the end of the expression", 6),
    ("$.a > 1 2", "unexpected 2", 9),
    ("$.a == 1 $.b == 2", "unexpected path '$.b'", 10),
    ("foo == 1", "unknown word 'foo'", 1),
    ("$.a[*] == 1", "no wildcards or filters", 4),
    ("$..a == 1", "expected a field name after '.'", 3),
    ("$.a[?(@.x)] == 1", "no wildcards or filters", 4),
    ("(($.a == 1)", "expected ')'", 12),
    ("'abc", "unterminated string", 1),
    ("'a\\q' == 'b'", "unknown escape", 3),
    ("$.a < 1 < 2", "comparisons do not chain", 9),
    ("exists $.a", "expected '(' after exists", 8),
    ("exists(1)", "exists() takes a path", 8),
    ("exists($.a", "expected ')' after the path", 11),
    ("$.a in [1, 2", "expected ',' or ']' in a list", 13),
    ("$.a == 1 and", "expected a value or a path", 13),
    ("$.a = 1", "unexpected character '='", 5),
    ("$['a] == 1", "unterminated string", 3),
    ("$['a' == 1", "expected ']' after a quoted field name", 6),
    ("import os", "unknown word 'import'", 1),
    ("__import__('os')", "unknown word '__import__'", 1),
]


@pytest.mark.parametrize(("expression", "message", "column"), INVALID)
def test_parse_errors_name_the_position(expression: str, message: str, column: int) -> None:
    """A bad expression raises ConditionError saying what is wrong and at which column."""
    with pytest.raises(ConditionError) as caught:
        parse(expression)
    assert message in caught.value.message
    assert caught.value.message.endswith(f"at column {column}")
    assert caught.value.position == column - 1


def test_length_and_depth_are_bounded() -> None:
    """Expressions longer than MAX_LENGTH or nested deeper than MAX_DEPTH are refused; the
    limits themselves are accepted."""
    longest = "true" + " " * (MAX_LENGTH - 4)
    assert evaluate(parse(longest), CONTEXT) is True
    with pytest.raises(ConditionError, match=f"at most {MAX_LENGTH} characters"):
        parse(longest + " ")
    nested = "(" * MAX_DEPTH + "true" + ")" * MAX_DEPTH
    assert evaluate(parse(nested), CONTEXT) is True
    with pytest.raises(ConditionError, match="nested deeper"):
        parse("(" * (MAX_DEPTH + 1) + "true" + ")" * (MAX_DEPTH + 1))
    with pytest.raises(ConditionError, match="nested deeper"):
        parse("not " * (MAX_DEPTH + 1) + "true")
    with pytest.raises(ConditionError, match="nested deeper"):
        parse("$.a in " + "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1))


def test_long_flat_chains_do_not_nest() -> None:
    """A long chain of `and`/`or` is flat, not deep: it parses within the length bound."""
    expression = " and ".join(["$.input.count == 3"] * 80)
    assert evaluate(parse(expression), CONTEXT) is True


REFERENCES: list[tuple[str, set[str]]] = [
    ("$.steps.transcribe.word_count > 100", {"transcribe"}),
    ("$['steps']['a'] == 1 or exists($.steps.b.x)", {"a", "b"}),
    ("$.input.x in [$.steps.c.y, 1] and not $.steps.d", {"c", "d"}),
    ("$.input.steps.x == 1", set()),
    ("$.job.id == 'x'", set()),
    ("true", set()),
]


@pytest.mark.parametrize(("expression", "steps"), REFERENCES)
def test_referenced_steps(expression: str, steps: set[str]) -> None:
    """The steps a condition reads are those named as `$.steps.<id>`."""
    assert referenced_steps(parse(expression)) == steps


def test_trees_compare_by_meaning() -> None:
    """Two spellings of one path give equal trees (what the dead-case check compares)."""
    assert parse("$.a.b == 1") == parse("$['a'][\"b\"] == 1")
    assert parse("$.a.b == 1") != parse("$.a.b == 2")
    assert is_literally_true(parse("true"))
    assert is_literally_true(parse("(true)"))
    assert not is_literally_true(parse("not false"))
