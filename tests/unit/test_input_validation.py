"""Unit tests of input_data validation against a workflow's input_schema."""

from __future__ import annotations

from typing import Any

import pytest

from engine.definitions.inputs import MAX_MESSAGE_LENGTH, input_problems, is_uri, json_pointer

SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["audio_url"],
    "properties": {
        "audio_url": {"type": "string", "format": "uri"},
        "email": {"type": "string", "format": "email"},
        "when": {"type": "string", "format": "date-time"},
        "id": {"type": "string", "format": "uuid"},
        "count": {"type": "integer", "minimum": 1},
        "tags": {"type": "array", "items": {"type": "string"}},
        "meta": {
            "type": "object",
            "required": ["a/b"],
            "properties": {"a/b": {"type": "string"}, "x~y": {"type": "number"}},
        },
    },
    "additionalProperties": False,
}

OK = {"audio_url": "https://example.org/a.mp3"}


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(OK, [], id="valid"),
        pytest.param(
            {
                **OK,
                "email": "a@example.org",
                "when": "2024-05-01T10:00:00Z",
                "count": 2,
                "id": "6f1c2f7e-0c8b-4b8e-9d1e-2f8c7a9b0c1d",
                "tags": ["x"],
                "meta": {"a/b": "v"},
            },
            [],
            id="valid-all-fields",
        ),
        pytest.param(
            {}, [("/audio_url", "'audio_url' is a required property")], id="missing-required"
        ),
        pytest.param([], [("/", "[] is not of type 'object'")], id="root-type"),
        pytest.param(
            {"audio_url": "not a uri"}, [("/audio_url", "'not a uri' is not a 'uri'")], id="uri"
        ),
        pytest.param(
            {"audio_url": "relative/path"},
            [("/audio_url", "'relative/path' is not a 'uri'")],
            id="relative-uri",
        ),
        pytest.param({**OK, "email": "nope"}, [("/email", "'nope' is not a 'email'")], id="email"),
        pytest.param(
            {**OK, "when": "yesterday"},
            [("/when", "'yesterday' is not a 'date-time'")],
            id="date-time",
        ),
        pytest.param({**OK, "id": "123"}, [("/id", "'123' is not a 'uuid'")], id="uuid"),
        pytest.param(
            {**OK, "count": 0}, [("/count", "0 is less than the minimum of 1")], id="minimum"
        ),
        pytest.param(
            {**OK, "tags": ["a", 3]}, [("/tags/1", "3 is not of type 'string'")], id="array-item"
        ),
        pytest.param(
            {**OK, "meta": {"x~y": "s"}},
            [
                ("/meta/a~1b", "'a/b' is a required property"),
                ("/meta/x~0y", "'s' is not of type 'number'"),
            ],
            id="pointer-escaping",
        ),
        pytest.param(
            {"extra": 1, "count": "two"},
            [
                ("/", "Additional properties are not allowed ('extra' was unexpected)"),
                ("/audio_url", "'audio_url' is a required property"),
                ("/count", "'two' is not of type 'integer'"),
            ],
            id="several-sorted",
        ),
    ],
)
def test_input_problems(data: Any, expected: list[tuple[str, str]]) -> None:
    """Every violation is reported at its JSON pointer (missing members point at themselves)."""
    assert [(p.location, p.message) for p in input_problems(SCHEMA, data)] == expected


def test_long_messages_are_truncated() -> None:
    """A huge offending value does not produce a huge message."""
    problems = input_problems(
        {"type": "object", "properties": {"a": {"type": "integer"}}}, {"a": "x" * 5000}
    )
    assert len(problems) == 1
    assert len(problems[0].message) == MAX_MESSAGE_LENGTH


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("https://example.org/a?b=c#d", True),
        ("http://127.0.0.1:8080/x", True),
        ("urn:isbn:0451450523", True),
        ("mailto:a@example.org", True),
        ("example.org/a", False),
        ("https://exa mple.org", False),
        ("http://host:notaport/", False),
        ("", False),
        (5, True),
    ],
)
def test_is_uri(value: object, valid: bool) -> None:
    """The uri format needs a scheme and no spaces; non-strings are left to 'type'."""
    assert is_uri(value) is valid


@pytest.mark.parametrize(
    ("parts", "pointer"),
    [([], "/"), (["a"], "/a"), (["a", 0, "b"], "/a/0/b"), (["a/b", "c~d"], "/a~1b/c~0d")],
)
def test_json_pointer(parts: list[Any], pointer: str) -> None:
    """Pointers follow RFC 6901, with '/' for the root."""
    assert json_pointer(parts) == pointer
