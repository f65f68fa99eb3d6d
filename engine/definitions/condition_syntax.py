"""The syntax of conditions (engine.definitions.conditions): tokens, the frozen tree, the parser.

`parse` turns an expression into a tree of Compare, Exists, Truth, Not, And and Or nodes over
Path, Literal and ListLiteral operands; the grammar is in engine.definitions.conditions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from engine.errors import EngineError

#: The longest expression accepted, in characters.
MAX_LENGTH = 2000
#: The deepest nesting of parentheses, `not` and list literals accepted.
MAX_DEPTH = 32

Segment = tuple[str, str | int]  # ("field", name) or ("index", n)


class ConditionError(EngineError):
    """An expression that does not parse; `position` is the 0-based character offset."""

    code = "invalid_condition"

    def __init__(self, message: str, position: int) -> None:
        super().__init__(f"{message} at column {position + 1}", details={"position": position})
        self.position = position


# ---------------------------------------------------------------------------------------------
# The tree
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Path:
    """A singular path: its text as written and its segments after ``$`` (two paths are
    equal when their segments are: ``$.a`` is ``$['a']``)."""

    text: str = field(compare=False)
    segments: tuple[Segment, ...]


@dataclass(frozen=True)
class Literal:
    """A number, string, boolean or null."""

    value: Any


@dataclass(frozen=True)
class ListLiteral:
    """A list of operands, ``[1, 'a', $.input.x]``."""

    items: tuple[Operand, ...]


Operand = Path | Literal | ListLiteral


@dataclass(frozen=True)
class Compare:
    """``left op right``."""

    op: str
    left: Operand
    right: Operand


@dataclass(frozen=True)
class Exists:
    """``exists(path)``."""

    path: Path


@dataclass(frozen=True)
class Truth:
    """A bare operand used as a condition: holds when its value is ``true``."""

    operand: Operand


@dataclass(frozen=True)
class Not:
    """``not condition``."""

    operand: Condition


@dataclass(frozen=True)
class And:
    """All of `items`."""

    items: tuple[Condition, ...]


@dataclass(frozen=True)
class Or:
    """Any of `items`."""

    items: tuple[Condition, ...]


Condition = Compare | Exists | Truth | Not | And | Or

# ---------------------------------------------------------------------------------------------
# Tokens
# ---------------------------------------------------------------------------------------------

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_INDEX = re.compile(r"\[\s*(-?[0-9]+)\s*\]")
_OPERATORS = ("==", "!=", "<=", ">=", "<", ">")
_PUNCTUATION = "()[],"
_KEYWORDS = {"and", "or", "not", "in", "exists", "true", "false", "null"}
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", "'": "'", '"': '"', "/": "/"}


@dataclass(frozen=True)
class _Token:
    kind: str  # "op", "punct", "word", "number", "string", "path", "end"
    value: Any
    position: int


def _read_string(text: str, start: int) -> tuple[str, int]:
    """The string literal opening at `start`; returns its value and the offset after it."""
    quote = text[start]
    out: list[str] = []
    pos = start + 1
    while pos < len(text):
        char = text[pos]
        if char == quote:
            return "".join(out), pos + 1
        if char == "\\":
            escaped = text[pos + 1 : pos + 2]
            if escaped not in _ESCAPES:
                raise ConditionError(f"unknown escape '\\{escaped}' in a string", pos)
            out.append(_ESCAPES[escaped])
            pos += 2
            continue
        out.append(char)
        pos += 1
    raise ConditionError("unterminated string", start)


def _read_path(text: str, start: int) -> tuple[Path, int]:
    """The path starting with ``$`` at `start`; returns it and the offset after it."""
    pos = start + 1
    segments: list[Segment] = []
    while pos < len(text) and text[pos] in ".[":
        if text[pos] == ".":
            name = _NAME.match(text, pos + 1)
            if name is None:
                raise ConditionError("expected a field name after '.' in a path", pos + 1)
            segments.append(("field", name.group()))
            pos = name.end()
        elif (index := _INDEX.match(text, pos)) is not None:
            segments.append(("index", int(index.group(1))))
            pos = index.end()
        elif text[pos + 1 : pos + 2] in ("'", '"'):
            key, after = _read_string(text, pos + 1)
            if text[after : after + 1] != "]":
                raise ConditionError("expected ']' after a quoted field name", after)
            segments.append(("field", key))
            pos = after + 1
        else:
            raise ConditionError(
                "a path segment is .name, ['name'] or [number] (no wildcards or filters)", pos
            )
    return Path(text[start:pos], tuple(segments)), pos


def _next_token(text: str, pos: int) -> _Token:
    """The token at `pos` (no whitespace there); its end is read back by the caller."""
    char = text[pos]
    if char == "$":
        path, end = _read_path(text, pos)
        return _Token("path", (path, end), pos)
    if char in "'\"":
        value, end = _read_string(text, pos)
        return _Token("string", (value, end), pos)
    for op in _OPERATORS:
        if text.startswith(op, pos):
            return _Token("op", (op, pos + len(op)), pos)
    if char in _PUNCTUATION:
        return _Token("punct", (char, pos + 1), pos)
    if (number := _NUMBER.match(text, pos)) is not None:
        raw = number.group()
        number_value = float(raw) if any(c in raw for c in ".eE") else int(raw)
        return _Token("number", (number_value, number.end()), pos)
    if (word := _WORD.match(text, pos)) is not None:
        if word.group() not in _KEYWORDS:
            raise ConditionError(f"unknown word {word.group()!r} (paths start with '$')", pos)
        return _Token("word", (word.group(), word.end()), pos)
    raise ConditionError(f"unexpected character {char!r}", pos)


def tokenize(text: str) -> list[_Token]:
    """The tokens of an expression, ending with an "end" token."""
    tokens: list[_Token] = []
    pos = 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            tokens.append(_Token("end", None, pos))
            return tokens
        token = _next_token(text, pos)
        value, pos = token.value
        tokens.append(_Token(token.kind, value, token.position))


# ---------------------------------------------------------------------------------------------
# The parser
# ---------------------------------------------------------------------------------------------

_LITERAL_WORDS = {"true": True, "false": False, "null": None}


class _Parser:
    """Recursive descent over the tokens; `depth` bounds nesting."""

    def __init__(self, tokens: list[_Token]) -> None:
        self.tokens = tokens
        self.index = 0
        self.depth = 0

    @property
    def token(self) -> _Token:
        return self.tokens[self.index]

    def at(self, kind: str, value: Any = None) -> bool:
        token = self.token
        return token.kind == kind and (value is None or token.value == value)

    def take(self) -> _Token:
        token = self.token
        self.index += 1
        return token

    def expect(self, kind: str, value: str, what: str) -> None:
        if not self.at(kind, value):
            raise ConditionError(
                f"expected {what}, found {_describe(self.token)}", self.token.position
            )
        self.take()

    def nest(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ConditionError(f"nested deeper than {MAX_DEPTH} levels", self.token.position)

    def condition(self) -> Condition:
        items = [self.conjunction()]
        while self.at("word", "or"):
            self.take()
            items.append(self.conjunction())
        return items[0] if len(items) == 1 else Or(tuple(items))

    def conjunction(self) -> Condition:
        items = [self.negation()]
        while self.at("word", "and"):
            self.take()
            items.append(self.negation())
        return items[0] if len(items) == 1 else And(tuple(items))

    def negation(self) -> Condition:
        if self.at("word", "not"):
            self.take()
            self.nest()
            inner = self.negation()
            self.depth -= 1
            return Not(inner)
        if self.at("punct", "("):
            self.take()
            self.nest()
            inner = self.condition()
            self.depth -= 1
            self.expect("punct", ")", "')'")
            return inner
        if self.at("word", "exists"):
            self.take()
            self.expect("punct", "(", "'(' after exists")
            if not self.at("path"):
                raise ConditionError("exists() takes a path", self.token.position)
            path = self.take().value
            self.expect("punct", ")", "')' after the path")
            return Exists(path)
        return self.comparison()

    def comparison(self) -> Condition:
        left = self.operand()
        if self.at("op") or self.at("word", "in"):
            op = self.take().value
            right = self.operand()
            if self.at("op") or self.at("word", "in"):
                raise ConditionError(
                    "comparisons do not chain; join them with 'and'", self.token.position
                )
            return Compare(op, left, right)
        return Truth(left)

    def operand(self) -> Operand:
        token = self.token
        if token.kind == "path":
            self.take()
            return token.value  # type: ignore[no-any-return]
        if token.kind in ("number", "string"):
            self.take()
            return Literal(token.value)
        if token.kind == "word" and token.value in _LITERAL_WORDS:
            self.take()
            return Literal(_LITERAL_WORDS[token.value])
        if self.at("punct", "["):
            return self.list_literal()
        raise ConditionError(
            f"expected a value or a path, found {_describe(token)}", token.position
        )

    def list_literal(self) -> ListLiteral:
        self.take()
        self.nest()
        items: list[Operand] = []
        if not self.at("punct", "]"):
            items.append(self.operand())
            while self.at("punct", ","):
                self.take()
                items.append(self.operand())
        self.expect("punct", "]", "',' or ']' in a list")
        self.depth -= 1
        return ListLiteral(tuple(items))


def _describe(token: _Token) -> str:
    if token.kind == "end":
        return "the end of the expression"
    if token.kind == "path":
        return f"path {token.value.text!r}"
    return repr(token.value)


def parse(expression: str) -> Condition:
    """The tree of an expression; ConditionError naming the column of the first problem."""
    if not isinstance(expression, str):
        raise ConditionError(f"a condition is a string, not {type(expression).__name__}", 0)
    if len(expression) > MAX_LENGTH:
        raise ConditionError(f"a condition is at most {MAX_LENGTH} characters", MAX_LENGTH)
    parser = _Parser(tokenize(expression))
    if parser.at("end"):
        raise ConditionError("empty condition", 0)
    tree = parser.condition()
    if not parser.at("end"):
        token = parser.token
        raise ConditionError(
            f"unexpected {_describe(token)} (join conditions with 'and' or 'or')", token.position
        )
    return tree
