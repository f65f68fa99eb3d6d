"""The API's one input policy: what a JSON body, a request parameter or a token subject may hold.

Python's JSON parser accepts values the rest of the engine cannot store or serialise, so every
input is checked here, once, before any route sees it (pure functions; api/strict_input.py
installs them on the app):

- text (strings, object keys, query, path and header values) holds no NUL (U+0000: PostgreSQL
  `text` and `jsonb` refuse it) and no lone surrogate (U+D800..U+DFFF unpaired: not Unicode,
  it cannot be written as UTF-8);
- numbers are finite: `NaN`, `Infinity`, `-Infinity` and literals beyond a double such as
  `1e400` are refused (jsonb has no such values); integers have at most Python's 4300 digits;
- a body nests at most `max_depth` arrays and objects, counting the body itself
  (API_MAX_JSON_DEPTH; the engine's serialisers stop at 255 levels, and a body deeper than
  Python's recursion limit cannot be parsed at all);
- a body is UTF-8 JSON (syntax errors keep FastAPI's own `json_invalid` answer).

Each problem names where it is (`("body", "input_data", "k")`, `("query", "workflow_id")`), in
the `location` form of every other 422 the API gives.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

#: How many problems one answer lists at most (a 1 MB body could hold thousands).
MAX_PROBLEMS = 20

#: A character no stored text may hold: NUL, or any surrogate (after JSON decoding, a valid
#: pair has become one character, so every surrogate left is a lone one).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")

Location = tuple[str | int, ...]


@dataclass(frozen=True)
class InputProblem:
    """One thing wrong with a request's input: where, what (for people), and its type code."""

    location: Location
    message: str
    type: str


class UndecodableInputError(ValueError):
    """The input breaks the policy; `problems` says where and why (at most MAX_PROBLEMS)."""

    def __init__(self, problems: list[InputProblem]) -> None:
        super().__init__("; ".join(f"{p.location}: {p.message}" for p in problems))
        self.problems = problems


class _TooLongInteger:
    """Stands in for an integer literal Python refuses to convert (more than 4300 digits)."""


_TOO_LONG_INTEGER = _TooLongInteger()


def printable(part: str | int) -> str | int:
    """`part` with each NUL or surrogate written as `\\uXXXX`, so an answer naming a bad key
    can itself be encoded (a lone surrogate cannot be written as UTF-8)."""
    if isinstance(part, int):
        return part
    return _UNSTORABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", part)


def text_problem(text: str) -> tuple[str, str] | None:
    """(type, message) of what makes `text` unstorable, or None when it is fine."""
    found = _UNSTORABLE.search(text)
    if found is None:
        return None
    if found.group() == "\x00":
        return "nul_character", "contains a NUL character (U+0000), which cannot be stored"
    return "lone_surrogate", "contains a lone UTF-16 surrogate, which is not valid Unicode"


def _parse_int(literal: str) -> int | _TooLongInteger:
    """An integer literal, or the marker for one too long to convert (found by the walk)."""
    try:
        return int(literal)
    except ValueError:
        return _TOO_LONG_INTEGER


class _SuspectNumberError(ValueError):
    """The quick parse met a number the policy refuses; the walk will say where."""


def _refuse_constant(literal: str) -> float:
    raise _SuspectNumberError(literal)


def _finite_float(literal: str) -> float:
    value = float(literal)
    if math.isinf(value):  # NaN only comes as a constant
        raise _SuspectNumberError(literal)
    return value


#: Escapes and bytes of JSON text that may decode to a NUL or a surrogate. A superset (a
#: valid escaped pair, or an escaped backslash before "u0000", matches too); the walk decides.
_SUSPECT_TEXT = re.compile(rb"\\u(?:0000|[dD][89a-fA-F][0-9a-fA-F]{2})|\xed[\xa0-\xbf]")
#: A JSON string token, escapes included (in text that parsed, quotes always pair up).
_STRING_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
#: Keeps only brackets, braces written as brackets (nesting depth ignores the kind).
_BRACKETS = bytes.maketrans(b"{}", b"[]")
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"[]{}")))


def nests_deeper_than(text: bytes, limit: int) -> bool:
    """Whether JSON text that parsed (UTF-8) nests more than `limit` arrays and objects.

    Strings are cut out and only brackets kept; each pass then deletes the innermost pairs,
    one level everywhere at once, so `limit` passes empty the text unless it is deeper. All
    of it runs in C: a megabyte of small values takes milliseconds, not a Python loop each.
    """
    if text.count(b"[") + text.count(b"{") <= limit:
        return False
    brackets = _STRING_TOKEN.sub(b"", text).translate(_BRACKETS, _NOT_BRACKETS)
    for _ in range(limit):
        brackets = brackets.replace(b"[]", b"")
        if not brackets:
            return False
    return True


def _utf8(raw: bytes) -> bytes:
    """`raw` as UTF-8 (JSON may also arrive as UTF-16 or UTF-32; json.loads accepts them)."""
    encoding = json.detect_encoding(raw)
    if encoding == "utf-8":
        return raw
    return raw.decode(encoding, "surrogatepass").encode("utf-8", "surrogatepass")


def _parse(raw: bytes, max_depth: int, *, quick: bool) -> Any:
    """json.loads; `quick` raises ValueError at the first refused number instead of keeping
    it. Syntax errors stay `json.JSONDecodeError`; undecodable text and nesting too deep for
    the parser become `UndecodableInputError` located at the body."""
    try:
        if quick:
            return json.loads(raw, parse_constant=_refuse_constant, parse_float=_finite_float)
        return json.loads(raw, parse_int=_parse_int)
    except json.JSONDecodeError:
        raise
    except UnicodeDecodeError:
        problem = InputProblem(("body",), "is not UTF-8 text", "not_utf8")
        raise UndecodableInputError([problem]) from None
    except RecursionError:
        # Only a body nested hundreds of levels deep exhausts the parser's recursion limit.
        raise UndecodableInputError([_too_deep(("body",), max_depth)]) from None


def decode_json(raw: bytes, *, max_depth: int) -> Any:
    """Parse a JSON body and check it against the policy; `UndecodableInputError` otherwise.

    A syntax error still raises `json.JSONDecodeError` (FastAPI answers it with its own
    `json_invalid` detail); locations are relative to the body, starting with "body".
    Ordinary bodies are checked at C speed (the parse, one search of the raw text, the
    nesting passes); only a body that may break the policy is walked value by value, which
    is what names each location.
    """
    try:
        value = _parse(raw, max_depth, quick=True)
    except ValueError as exc:
        if isinstance(exc, json.JSONDecodeError | UndecodableInputError):
            raise
        suspect = True  # a refused number, or an integer too long to convert
    else:
        text = _utf8(raw)
        suspect = bool(_SUSPECT_TEXT.search(text)) or nests_deeper_than(text, max_depth)
    if not suspect:
        return value
    value = _parse(raw, max_depth, quick=False)
    problems = value_problems(value, max_depth=max_depth, root=("body",))
    if problems:
        raise UndecodableInputError(problems)
    return value


def _too_deep(location: Location, max_depth: int) -> InputProblem:
    return InputProblem(
        location, f"nests deeper than {max_depth} arrays or objects", "too_deeply_nested"
    )


def _scalar_problem(value: Any) -> tuple[str, str] | None:
    """(type, message) of what is wrong with a decoded scalar, or None."""
    if isinstance(value, str):
        return text_problem(value)
    if isinstance(value, float) and not math.isfinite(value):
        return "non_finite_number", "is not a finite number (NaN, Infinity or out of range)"
    if value is _TOO_LONG_INTEGER:
        return "integer_too_long", "is an integer with more digits than the API accepts"
    return None


def value_problems(value: Any, *, max_depth: int, root: Location = ()) -> list[InputProblem]:
    """Every policy problem in a decoded JSON value (the first MAX_PROBLEMS, in body order).

    Iterative, so a value nested deeper than Python's recursion limit is still walked.
    """
    problems: list[InputProblem] = []
    pending: list[tuple[Any, Location, int]] = [(value, root, 1)]
    while pending and len(problems) < MAX_PROBLEMS:
        node, location, depth = pending.pop()
        if isinstance(node, dict | list):
            if depth > max_depth:
                problems.append(_too_deep(location, max_depth))
                continue
            items = node.items() if isinstance(node, dict) else enumerate(node)
            children: list[tuple[Any, Location, int]] = []
            for key, child in items:
                here = (*location, printable(key))
                key_problem = text_problem(key) if isinstance(key, str) else None
                if key_problem is not None:
                    problems.append(InputProblem(here, "key " + key_problem[1], key_problem[0]))
                children.append((child, here, depth + 1))
            pending.extend(reversed(children))
            continue
        problem = _scalar_problem(node)
        if problem is not None:
            problems.append(InputProblem(location, problem[1], problem[0]))
    return problems[:MAX_PROBLEMS]


def parameter_problems(source: str, items: Iterable[tuple[str, str]]) -> list[InputProblem]:
    """Problems of request parameters (`source` "query", "path" or "header"): names and values
    must be storable text; each problem is located at the parameter's name."""
    problems: list[InputProblem] = []
    for name, text in items:
        for what, checked in (("name", name), ("value", text)):
            problem = text_problem(checked)
            if problem is not None:
                message = f"parameter {what} {problem[1]}"
                problems.append(InputProblem((source, printable(name)), message, problem[0]))
    return problems[:MAX_PROBLEMS]


# --- the token subject ---------------------------------------------------------------------


def canonical_user_id(sub: object) -> str | None:
    """`sub` when it is a user id in its one accepted spelling, else None.

    Supabase Auth writes user ids as lowercase hyphenated UUIDs, and the database compares
    the token's own `sub` (RLS reads cast it with `auth.uid()`), so another spelling of the
    same UUID (upper case, braces, `urn:uuid:`, no hyphens) is refused rather than rewritten:
    rewriting would make the API and the database see two different subjects in one token.
    """
    if not isinstance(sub, str):
        return None
    try:
        parsed = uuid.UUID(sub)
    except ValueError:
        return None
    return sub if str(parsed) == sub else None
