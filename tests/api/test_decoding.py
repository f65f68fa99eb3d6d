"""The API's input policy as pure functions (api/decoding.py, api/cursor.py): what a JSON body,
a parameter, a cursor and a token subject may hold, and where each problem is reported."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from json_texts import deep_values, values

from api.cursor import cursor_parts
from api.decoding import (
    MAX_PROBLEMS,
    UndecodableInputError,
    canonical_user_id,
    decode_json,
    nests_deeper_than,
    parameter_problems,
    printable,
    value_problems,
)

USER_ID = "5b1f8f0e-2f5e-4b8e-9d0a-0c1d2e3f4a5b"


def nested(depth: int) -> str:
    """A JSON body whose `input_data.d` makes the whole body `depth` containers deep."""
    inner = "[" * (depth - 2) + "]" * (depth - 2)
    return '{"input_data": {"d": ' + inner + "}}" if depth > 2 else '{"input_data": {}}'


def problems_of(raw: str | bytes, max_depth: int = 64) -> list[tuple[tuple[Any, ...], str]]:
    """(location, type) of each problem `decode_json` finds in `raw`; [] when it decodes."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    try:
        decode_json(data, max_depth=max_depth)
    except UndecodableInputError as exc:
        return [(p.location, p.type) for p in exc.problems]
    return []


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ('{"a": "x\\u0000y"}', [(("body", "a"), "nul_character")]),
        ('{"k\\u0000": 1}', [(("body", "k\\u0000"), "nul_character")]),
        ('{"a": ["ok", "\\ud800"]}', [(("body", "a", 1), "lone_surrogate")]),
        ('{"\\udfff": 1}', [(("body", "\\udfff"), "lone_surrogate")]),
        ('{"a": NaN}', [(("body", "a"), "non_finite_number")]),
        ('{"a": Infinity}', [(("body", "a"), "non_finite_number")]),
        ('{"a": -Infinity}', [(("body", "a"), "non_finite_number")]),
        ('{"a": 1e400}', [(("body", "a"), "non_finite_number")]),
        ('{"a": -1e400}', [(("body", "a"), "non_finite_number")]),
        ('{"a": ' + "9" * 5000 + "}", [(("body", "a"), "integer_too_long")]),
        (b'{"a": "\xff"}', [(("body",), "not_utf8")]),
        (b'{"a": "\xed\xa0\x80"}', [(("body", "a"), "lone_surrogate")]),
    ],
    ids=[
        "nul-value",
        "nul-key",
        "surrogate-in-list",
        "surrogate-key",
        "nan",
        "infinity",
        "minus-infinity",
        "overflow",
        "negative-overflow",
        "5000-digit-int",
        "not-utf8",
        "utf8-encoded-surrogate",
    ],
)
def test_unstorable_values_are_named_by_location(
    raw: str | bytes, expected: list[tuple[tuple[Any, ...], str]]
) -> None:
    """Each value PostgreSQL or the serialisers cannot take is one problem at its location;
    a bad key is written with `\\uXXXX` escapes so the answer can be encoded."""
    assert problems_of(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        '{"a": "\\ud83d\\ude00", "b": "caf\\u00e9", "c": ""}',
        '{"a": 1.5e308, "b": -0.0, "c": 5e-324, "d": 12345678901234567890}',
        '{"a": [true, false, null, {}, []]}',
        '"just a string"',
    ],
    ids=["valid-pair-and-accents", "finite-extremes", "literals", "scalar-body"],
)
def test_storable_values_decode(raw: str) -> None:
    """Valid surrogate pairs, finite extremes, big integers and literals are all fine."""
    assert problems_of(raw) == []
    assert decode_json(raw.encode(), max_depth=64) == json.loads(raw)


@pytest.mark.parametrize("depth", [64, 65, 256, 999, 5000])
def test_nesting_is_limited_at_every_depth(depth: int) -> None:
    """At most `max_depth` containers (the body counts as one); deeper is one `too_deeply_nested`
    problem, also past Python's recursion limit (where the location is the body itself)."""
    found = problems_of(nested(depth))
    if depth <= 64:
        assert found == []
        return
    assert len(found) == 1
    location, kind = found[0]
    assert kind == "too_deeply_nested"
    if depth < 900:
        assert location == ("body", "input_data", "d", *([0] * 62))
    else:
        assert location[0] == "body"


def depth(value: Any) -> int:
    """How many arrays and objects `value` nests (a scalar: 0), without recursion."""
    deepest, pending = 0, [(value, 1)]
    while pending:
        node, level = pending.pop()
        if isinstance(node, dict | list):
            deepest = max(deepest, level)
            children = node.values() if isinstance(node, dict) else node
            pending.extend((child, level + 1) for child in children)
    return deepest


@pytest.mark.parametrize(
    ("text", "levels"),
    [
        ("1", 0),
        ("[]", 1),
        ('{"a": [1, {"b": []}], "c": {}}', 4),
        ('{"[[[": "]]]", "x": ["\\"[", "{\\\\"]}', 2),
        ("[[], [[]], [[[]]]]", 4),
        ("{" + '"k": {' * 9 + "}" * 9 + "}", 10),
    ],
    ids=["scalar", "empty", "mixed", "brackets-in-strings", "siblings", "objects"],
)
def test_nesting_passes_count_levels_not_brackets(text: str, levels: int) -> None:
    """The C-speed nesting check counts levels, ignoring brackets inside strings."""
    assert depth(json.loads(text)) == levels
    for limit in range(1, levels + 2):
        assert nests_deeper_than(text.encode(), limit) == (levels > limit), limit


@pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisWarning")  # long examples
@settings(max_examples=300, deadline=None, database=None)
@given(text=st.one_of(values, deep_values), max_depth=st.integers(min_value=1, max_value=70))
def test_the_quick_checks_never_miss_what_the_walk_finds(text: str, max_depth: int) -> None:
    """decode_json reports exactly what the value-by-value walk finds: its quick checks
    (parse hooks, the raw-text search, the nesting passes) only ever skip clean bodies."""
    raw = text.encode("utf-8", "surrogatepass")
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        assume(False)  # integers too long and parser-deep bodies have their own tests
    expected = [
        (p.location, p.type) for p in value_problems(value, max_depth=max_depth, root=("body",))
    ]
    try:
        decode_json(raw, max_depth=max_depth)
    except UndecodableInputError as exc:
        assert [(p.location, p.type) for p in exc.problems] == expected
    else:
        assert expected == []
    # The nesting pass reads the text, so it may see more than the parsed value holds (a
    # repeated key keeps only its last value, e.g. {"a": [], "a": null}), never less.
    if depth(value) > max_depth:
        assert nests_deeper_than(raw, max_depth)


def test_a_repeated_key_is_judged_by_the_value_it_keeps() -> None:
    """`{"a": [], "a": null}` nests twice in its text but once in its value: the nesting pass
    flags it, the walk of the value clears it, so it is accepted at depth 1."""
    raw = b'{"a": [], "a": null}'
    assert nests_deeper_than(raw, 1)
    assert decode_json(raw, max_depth=1) == {"a": None}


def test_syntax_errors_stay_json_decode_errors() -> None:
    """Broken JSON keeps FastAPI's own `json_invalid` path: decode_json raises JSONDecodeError."""
    with pytest.raises(json.JSONDecodeError):
        decode_json(b'{"a": ', max_depth=64)


def test_utf16_bodies_are_checked_too() -> None:
    """JSON may come as UTF-16; its text is checked the same way."""
    assert problems_of('{"a": "x\\u0000"}'.encode("utf-16-le")) == [
        (("body", "a"), "nul_character")
    ]
    assert problems_of('{"a": [[[]]]}'.encode("utf-16"), max_depth=3) == [
        (("body", "a", 0, 0), "too_deeply_nested")
    ]


def test_problem_lists_are_bounded() -> None:
    """A body full of bad values reports the first MAX_PROBLEMS, in body order."""
    value = {f"k{i:03d}": float("nan") for i in range(500)}
    found = value_problems(value, max_depth=64)
    assert len(found) == MAX_PROBLEMS
    assert [p.location for p in found[:2]] == [("k000",), ("k001",)]


def test_parameter_problems_name_the_parameter() -> None:
    """A NUL in a parameter's value or name is reported at `<source>.<name>`."""
    found = parameter_problems("query", [("ok", "x"), ("workflow_id", "a\x00"), ("b\x00", "")])
    assert [(p.location, p.type) for p in found] == [
        (("query", "workflow_id"), "nul_character"),
        (("query", "b\\u0000"), "nul_character"),
    ]
    assert "value" in found[0].message and "name" in found[1].message


def test_printable_escapes_only_unstorable_characters() -> None:
    """NUL and surrogates become `\\uXXXX`; other text and indexes are unchanged."""
    assert printable("a\x00b\ud800é") == "a\\u0000b\\ud800é"
    assert printable(3) == 3


@pytest.mark.parametrize(
    ("sub", "accepted"),
    [
        (USER_ID, True),
        ("00000000-0000-0000-0000-000000000000", True),
        (USER_ID.upper(), False),
        ("{" + USER_ID + "}", False),
        ("urn:uuid:" + USER_ID, False),
        (USER_ID.replace("-", ""), False),
        (" " + USER_ID, False),
        (USER_ID + "\n", False),
        ("not-a-uuid", False),
        ("", False),
        (42, False),
        (None, False),
        ([USER_ID], False),
    ],
    ids=[
        "canonical",
        "nil",
        "upper-case",
        "braces",
        "urn",
        "no-hyphens",
        "leading-space",
        "trailing-newline",
        "not-a-uuid",
        "empty",
        "number",
        "missing",
        "list",
    ],
)
def test_only_the_canonical_user_id_spelling_is_a_subject(sub: object, accepted: bool) -> None:
    """A token subject is a user id only in Supabase's own spelling (lowercase, hyphenated):
    another spelling of the same UUID would reach the database as a different string."""
    assert canonical_user_id(sub) == (sub if accepted else None)
    if accepted:
        assert str(uuid.UUID(str(sub))) == sub


@pytest.mark.parametrize(
    "parts",
    [
        ["2026-01-01T00:00:00+00:00", ["x"]],
        ["2026-01-01T00:00:00+00:00", 42],
        [20260101, USER_ID],
        ["2026-01-01T00:00:00+00:00", None],
        ["2026-01-01T00:00:00+00:00", USER_ID, "extra"],
        ["2026-01-01T00:00:00", USER_ID],
        {"at": "2026-01-01T00:00:00+00:00", "id": USER_ID},
        "2026-01-01T00:00:00+00:00",
    ],
    ids=[
        "id-list",
        "id-number",
        "time-number",
        "id-null",
        "three-parts",
        "no-offset",
        "object",
        "string",
    ],
)
def test_cursor_parts_of_the_wrong_type_are_refused(parts: Any) -> None:
    """A decoded cursor must be [ISO time with offset, UUID string]; anything else is a
    ValueError (GET /jobs turns it into 422 naming `cursor`), never a TypeError or worse."""
    with pytest.raises(ValueError):
        cursor_parts(parts)


def test_cursor_parts_accept_what_encode_cursor_writes() -> None:
    """The two parts encode_cursor writes come back as (aware time, canonical id)."""
    at, job_id = cursor_parts(["2026-01-01T00:00:00+00:00", USER_ID.upper()])
    assert at.utcoffset() is not None
    assert job_id == USER_ID
