"""Validation of a job's input_data against its workflow's input_schema (JSON Schema 2020-12),
and the check that an object schema (an input schema, a form schema) is valid.

Formats are asserted (``uri``, ``email``, ``date-time``, ``uuid``...). jsonschema checks
``uri`` only when an optional package is installed, so this module registers its own ``uri``
and ``uri-reference`` checks (RFC 3986 shape: a scheme, no spaces or control characters).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import SchemaError

from engine.definitions.locations import format_location
from engine.errors import Problem

#: Longest message kept; jsonschema quotes the offending value, which may be large.
MAX_MESSAGE_LENGTH = 500

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
_FORBIDDEN = re.compile(r"[\x00-\x20\x7f<>\"{}|\\^`]")


def _valid_uri_reference(value: str) -> bool:
    if _FORBIDDEN.search(value):
        return False
    try:
        parts = urlsplit(value)
        _ = parts.port  # raises ValueError for a malformed port
    except ValueError:
        return False
    return True


def is_uri(value: object) -> bool:
    """True for an absolute URI (RFC 3986: a scheme, then no spaces); non-strings pass."""
    if not isinstance(value, str):
        return True
    return bool(_SCHEME.match(value)) and _valid_uri_reference(value)


def is_uri_reference(value: object) -> bool:
    """True for a URI or a relative reference; non-strings pass."""
    if not isinstance(value, str):
        return True
    return _valid_uri_reference(value)


def _format_checker() -> FormatChecker:
    checker = FormatChecker()  # every format jsonschema can check with what is installed
    checker.checks("uri")(is_uri)
    checker.checks("uri-reference")(is_uri_reference)
    return checker


FORMAT_CHECKER = _format_checker()


def json_pointer(parts: Any) -> str:
    """RFC 6901 pointer of a path (``~`` and ``/`` escaped); ``/`` for the root."""
    tokens = [str(part).replace("~", "~0").replace("/", "~1") for part in parts]
    return "/" + "/".join(tokens)


def _location(error: Any) -> str:
    parts = list(error.absolute_path)
    if error.validator == "required" and isinstance(error.instance, dict):
        # Point at the missing member rather than at the object that lacks it.
        for name in error.validator_value:
            if name not in error.instance and error.message == f"{name!r} is a required property":
                parts.append(name)
                break
    return json_pointer(parts)


def _message(text: str) -> str:
    if len(text) <= MAX_MESSAGE_LENGTH:
        return text
    return text[: MAX_MESSAGE_LENGTH - 3] + "..."


def input_problems(schema: dict[str, Any], data: Any) -> list[Problem]:
    """Every way `data` breaks `schema`, located by JSON pointer, sorted by location."""
    validator = Draft202012Validator(schema, format_checker=FORMAT_CHECKER)
    problems = [
        Problem(_location(error), _message(error.message)) for error in validator.iter_errors(data)
    ]
    return sorted(problems, key=lambda p: (p.location, p.message))


def object_schema_problems(schema: Any, location: str, what: str) -> list[Problem]:
    """`schema` (`what` in messages: "the input schema", "a form schema") must be a valid
    draft 2020-12 JSON Schema with ``"type": "object"`` on top."""
    problems: list[Problem] = []
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        where = format_location([location, *exc.absolute_path])
        problems.append(Problem(where, f"not a valid JSON Schema: {exc.message}"))
    if not isinstance(schema, dict) or schema.get("type") != "object":
        message = f'{what} must have "type": "object" at the top'
        problems.append(Problem(f"{location}.type", message))
    return problems
