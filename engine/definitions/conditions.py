"""Conditions: a small boolean expression language for a step's `when` and a switch's cases (pure).

An expression is a string such as
``$.steps.transcribe.word_count > 100 and exists($.input.webhook_url)``. It is parsed by a
tokenizer and a recursive-descent parser into a small frozen tree; nothing is ever executed.

Grammar (lowest precedence first)::

    condition  := or
    or         := and ("or" and)*
    and        := not ("and" not)*
    not        := "not" not | "(" condition ")" | "exists" "(" path ")" | comparison
    comparison := operand [("==" | "!=" | "<" | "<=" | ">" | ">=" | "in") operand]
    operand    := path | number | string | true | false | null | "[" [operand ("," operand)*] "]"

Paths are singular JSONPaths over ``{input, steps, job}``: ``$`` followed by ``.name``,
``['name']`` (or ``["name"]``) and ``[0]`` (``[-1]`` counts from the end) segments; no
wildcards, filters or slices. Strings take single or double quotes with backslash escapes.

Evaluation:

- A path that matches nothing is *missing*. Every comparison with a missing value is false
  (``!=`` too, so ``not (a == b)`` and ``a != b`` differ when ``a`` is missing); ``exists`` is
  false. Use ``exists(...)`` to test for presence, and ``not`` to invert a whole test.
- ``==`` and ``!=`` are JSON equality: ``1 == 1.0``, but a boolean never equals a number and
  a string never equals a number.
- ``<``, ``<=``, ``>``, ``>=`` compare two numbers or two strings; any other pair (a string
  and a number, null, a list...) is false, never an error.
- ``x in list`` holds when the list (a literal or a list value) has an item equal to ``x``;
  when the right side is not a list it is false.
- A bare operand (``$.input.notify``) holds only when its value is the boolean ``true``.

Expressions are at most MAX_LENGTH characters and MAX_DEPTH levels of nesting.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from engine.definitions.condition_syntax import (
    MAX_DEPTH,
    MAX_LENGTH,
    And,
    Compare,
    Condition,
    ConditionError,
    Exists,
    ListLiteral,
    Literal,
    Not,
    Operand,
    Or,
    Path,
    Truth,
    parse,
)

__all__ = [
    "MAX_DEPTH",
    "MAX_LENGTH",
    "And",
    "Compare",
    "Condition",
    "ConditionError",
    "Exists",
    "ListLiteral",
    "Literal",
    "Not",
    "Or",
    "Path",
    "Truth",
    "evaluate",
    "is_literally_true",
    "parse",
    "paths",
    "referenced_steps",
    "step_of",
]

# ---------------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------------


class _Missing:
    """What a path that matches nothing evaluates to."""


MISSING = _Missing()


def resolve(path: Path, context: Mapping[str, Any]) -> Any:
    """The value a path names in `context`, or MISSING."""
    current: Any = context
    for kind, key in path.segments:
        if kind == "field":
            if not isinstance(current, Mapping) or key not in current:
                return MISSING
        elif not isinstance(current, list) or not -len(current) <= int(key) < len(current):
            return MISSING
        current = current[key]
    return current


def _value(operand: Operand, context: Mapping[str, Any]) -> Any:
    if isinstance(operand, Path):
        return resolve(operand, context)
    if isinstance(operand, Literal):
        return operand.value
    items = [_value(item, context) for item in operand.items]
    return MISSING if any(item is MISSING for item in items) else items


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def json_equal(left: Any, right: Any) -> bool:
    """JSON equality: numbers by value, a boolean only equals a boolean, containers deeply."""
    if _is_number(left) and _is_number(right):
        return bool(left == right)
    if type(left) is not type(right):
        return False
    if isinstance(left, list):
        return len(left) == len(right) and all(map(json_equal, left, right))
    if isinstance(left, dict):
        return left.keys() == right.keys() and all(json_equal(left[k], right[k]) for k in left)
    return bool(left == right)


def _ordered(op: str, left: Any, right: Any) -> bool:
    if not (_is_number(left) and _is_number(right)) and not (
        isinstance(left, str) and isinstance(right, str)
    ):
        return False
    if op == "<":
        return bool(left < right)
    if op == "<=":
        return bool(left <= right)
    if op == ">":
        return bool(left > right)
    return bool(left >= right)


def _compare(node: Compare, context: Mapping[str, Any]) -> bool:
    left, right = _value(node.left, context), _value(node.right, context)
    if left is MISSING or right is MISSING:
        return False
    if node.op == "==":
        return json_equal(left, right)
    if node.op == "!=":
        return not json_equal(left, right)
    if node.op == "in":
        return isinstance(right, list) and any(json_equal(left, item) for item in right)
    return _ordered(node.op, left, right)


def evaluate(condition: Condition, context: Mapping[str, Any]) -> bool:
    """Whether the condition holds over `context` (``{input, steps, job}``); never raises
    for the data (see the module docstring for missing values and mixed types)."""
    if isinstance(condition, Compare):
        return _compare(condition, context)
    if isinstance(condition, Exists):
        return resolve(condition.path, context) is not MISSING
    if isinstance(condition, Truth):
        return _value(condition.operand, context) is True
    if isinstance(condition, Not):
        return not evaluate(condition.operand, context)
    if isinstance(condition, And):
        return all(evaluate(item, context) for item in condition.items)
    return any(evaluate(item, context) for item in condition.items)


# ---------------------------------------------------------------------------------------------
# Static analysis
# ---------------------------------------------------------------------------------------------


def _operand_paths(operand: Operand) -> Iterator[Path]:
    if isinstance(operand, Path):
        yield operand
    elif isinstance(operand, ListLiteral):
        for item in operand.items:
            yield from _operand_paths(item)


def paths(condition: Condition) -> Iterator[Path]:
    """Every path the condition reads, in order."""
    if isinstance(condition, Compare):
        yield from _operand_paths(condition.left)
        yield from _operand_paths(condition.right)
    elif isinstance(condition, Exists):
        yield condition.path
    elif isinstance(condition, Truth):
        yield from _operand_paths(condition.operand)
    elif isinstance(condition, Not):
        yield from paths(condition.operand)
    else:
        for item in condition.items:
            yield from paths(item)


def step_of(path: Path) -> str | None:
    """The step id X of a path ``$.steps.X...``, else None."""
    segments = path.segments
    if len(segments) >= 2 and segments[0] == ("field", "steps") and segments[1][0] == "field":
        return str(segments[1][1])
    return None


def referenced_steps(condition: Condition) -> frozenset[str]:
    """The ids of the steps whose output the condition reads (through ``$.steps.<id>``)."""
    return frozenset(name for path in paths(condition) if (name := step_of(path)) is not None)


def is_literally_true(condition: Condition) -> bool:
    """The condition is the literal ``true`` (it always holds)."""
    return isinstance(condition, Truth) and condition.operand == Literal(True)
