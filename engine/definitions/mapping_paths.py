"""JSONPaths of the mapping language: parsing, static analysis and evaluation of one path.

Paths must start with ``$``. A *singular* path (only root, single fields and single indexes,
e.g. ``$.steps.transcribe.segments[0]``) yields exactly one value and is an error when it
matches nothing. Any other path (wildcards, slices, filters, ``..``, unions, several fields)
yields a list of every match, possibly empty.

Step references: `referenced_steps` tells which step outputs a path can read. A path that can
read the output of any step (``$.steps``, ``$.steps.*``, ``$..x``, ``$`` itself, a filter over
``$.steps``) is reported as `ALL_STEPS` (``"*"``, never a valid step id), and the definition
checks treat it as reading every other step.

Templates (dicts with ``.$`` keys, defaults, coalesce lists) are in engine.definitions.mapping.
"""

from __future__ import annotations

import copy
import functools
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jsonpath_ng import jsonpath as jp
from jsonpath_ng.ext.parser import parse as _ext_parse

from engine.errors import MappingError

#: Marker returned by `step_reference` (and held by `referenced_steps`) for a path that can
#: read the output of every step. Step ids start with a letter, so it never names a step.
ALL_STEPS = "*"

#: The top-level keys of the mapping context.
CONTEXT_KEYS = frozenset({"input", "steps", "job"})


@functools.lru_cache(maxsize=1024)
def compile_path(expr: str) -> Any:
    """Parse a JSONPath with jsonpath-ng's extended grammar (filters, arithmetic); cached.

    Raises MappingError when the expression does not start with ``$`` or does not parse.
    """
    if not isinstance(expr, str):
        raise MappingError(f"a JSONPath must be a string, not {type(expr).__name__}")
    if not expr.strip().startswith("$"):
        raise MappingError(f"invalid JSONPath {expr!r}: it must start with '$'")
    try:
        # jsonpath-ng warns about deprecated syntax (e.g. `|`); the path still works.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return _ext_parse(expr)
    except Exception as exc:  # the parser raises several unrelated exception types
        raise MappingError(f"invalid JSONPath {expr!r}: {exc}") from exc


# ---------------------------------------------------------------------------------------------
# Static analysis of a parsed path
# ---------------------------------------------------------------------------------------------


def _relative_segments(node: Any) -> list[tuple[str, str | int]] | None:
    """Segments of a relative chain of single fields / single indexes, else None."""
    kind = type(node)
    if kind is jp.Fields and len(node.fields) == 1 and node.fields[0] != "*":
        return [("field", node.fields[0])]
    if kind is jp.Index and len(node.indices) == 1:
        return [("index", node.indices[0])]
    if kind is jp.Child:
        left = _relative_segments(node.left)
        right = _relative_segments(node.right)
        return None if left is None or right is None else [*left, *right]
    return None


def _singular_segments(node: Any) -> list[tuple[str, str | int]] | None:
    """The (kind, key) segments of a singular path after the root, or None if not singular."""
    kind = type(node)
    if kind is jp.Root:
        return []
    if kind is jp.Child:
        left = _singular_segments(node.left)
        right = _relative_segments(node.right)
        return None if left is None or right is None else [*left, *right]
    return None


def is_singular(expr: str) -> bool:
    """True when the path is only root, single fields and single indexes (one value at most)."""
    return _singular_segments(compile_path(expr)) is not None


_ROOT = "root"  # at the context itself
_STEPS = "steps"  # at context["steps"]
_OTHER = "other"  # anywhere below (inside input, job, or one step's output)


@dataclass
class PathInfo:
    """What a path reads: named steps, whether it can read every step, and top-level keys."""

    steps: set[str]
    all_steps: bool
    root_keys: set[str]


def _walk(node: Any, positions: set[str], info: PathInfo) -> set[str]:
    """Follow `node` from `positions`, recording what it reads in `info`; return new positions."""
    kind = type(node)
    if kind is jp.Root:
        return {_ROOT}
    if kind is jp.This:
        return set(positions)
    if kind is jp.Child:
        return _walk(node.right, _walk(node.left, positions, info), info)
    if kind is jp.Fields:
        out: set[str] = set()
        for pos in positions:
            for name in node.fields:
                if pos == _ROOT:
                    if name == "*":
                        info.all_steps = True
                        out |= {_STEPS, _OTHER}
                    else:
                        info.root_keys.add(name)
                        out.add(_STEPS if name == "steps" else _OTHER)
                elif pos == _STEPS:
                    if name == "*":
                        info.all_steps = True
                    else:
                        info.steps.add(name)
                    out.add(_OTHER)
                else:
                    out.add(_OTHER)
        return out
    if kind is jp.Index:
        return {_OTHER}
    if kind is jp.Descendants:
        left = _walk(node.left, positions, info)
        if left & {_ROOT, _STEPS}:
            info.all_steps = True
        _walk(node.right, {_OTHER}, info)
        return {_OTHER}
    if kind in (jp.Where, jp.WhereNot):
        left = _walk(node.left, positions, info)
        _walk(node.right, {_OTHER}, info)
        return left
    if kind is jp.Parent:
        # Going up can land back on the steps dict: assume the worst.
        info.all_steps = True
        return {_OTHER}
    left_node = getattr(node, "left", None)
    right_node = getattr(node, "right", None)
    if left_node is not None or right_node is not None:
        # Union, Intersect and arithmetic: read both sides (constants are not paths).
        out = set()
        for side in (left_node, right_node):
            if isinstance(side, jp.JSONPath):
                out |= _walk(side, positions, info)
        return out or {_OTHER}
    # Wildcard, Slice, Filter, sorting, `len`, string functions...: they may touch every member.
    if positions & {_ROOT, _STEPS}:
        info.all_steps = True
    return {_OTHER}


def path_info(expr: str) -> PathInfo:
    """Analyse which parts of the context a path can read (raises MappingError if invalid)."""
    info = PathInfo(steps=set(), all_steps=False, root_keys=set())
    final = _walk(compile_path(expr), {_ROOT}, info)
    if final & {_ROOT, _STEPS}:
        # The whole context or the whole steps dict is read.
        info.all_steps = True
    return info


def referenced_steps(expr: str) -> frozenset[str]:
    """Ids of the steps whose output the path reads; holds `ALL_STEPS` if it can read any."""
    info = path_info(expr)
    names = set(info.steps)
    if info.all_steps:
        names.add(ALL_STEPS)
    return frozenset(names)


def step_reference(expr: str) -> str | None:
    """The step id X for a path reading ``$.steps.X`` (also ``$['steps']['X']``), else None.

    Returns `ALL_STEPS` when the path can read more than one step's output (``$.steps``,
    ``$.steps.*``, ``$..x``, ``$``, several names); use `referenced_steps` for the exact set.
    """
    names = referenced_steps(expr)
    if not names:
        return None
    if len(names) == 1:
        return next(iter(names))
    return ALL_STEPS


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Mapping):
        return "an object"
    return f"a {type(value).__name__}"


def _path_text(segments: list[tuple[str, str | int]]) -> str:
    text = "$"
    for kind, key in segments:
        if kind == "index":
            text += f"[{key}]"
        elif isinstance(key, str) and key.replace("_", "").replace("-", "").isalnum():
            text += f".{key}"
        else:
            text += f"[{key!r}]"
    return text


def _resolve_singular(
    segments: list[tuple[str, str | int]], context: Mapping[str, Any]
) -> tuple[bool, Any, str]:
    """Walk singular segments; return (found, value, reason when not found)."""
    current: Any = context
    for depth, (kind, key) in enumerate(segments):
        parent = _path_text(segments[:depth])
        if kind == "field":
            if not isinstance(current, Mapping):
                return False, None, f"{parent} is {_describe(current)}, not an object"
            if key not in current:
                return False, None, f"{parent} has no key {key!r}"
            current = current[key]
        else:
            assert isinstance(key, int)
            if not isinstance(current, list):
                return False, None, f"{parent} is {_describe(current)}, not a list"
            if not -len(current) <= key < len(current):
                return False, None, f"{parent} has {len(current)} item(s), no index {key}"
            current = current[key]
    return True, current, ""


@dataclass(frozen=True)
class Lookup:
    """What one path found: whether it matched, the value, and why not when it did not.

    A singular path matches when its value exists (``null`` included); any other path when it
    has at least one match, its value being the list of matches (empty when it did not match).
    """

    matched: bool
    value: Any
    reason: str = ""


def lookup(expr: str, context: Mapping[str, Any], *, where: str, key: str = "") -> Lookup:
    """Evaluate one path over `context`; never raises for "matched nothing" (see `Lookup`).

    Raises MappingError naming `where` and the key when the path is invalid or a filter fails.
    """
    try:
        compiled = compile_path(expr)
    except MappingError as exc:
        raise MappingError(f"{where}: key {key!r}: {exc.message}") from exc
    segments = _singular_segments(compiled)
    if segments is not None:
        found, value, reason = _resolve_singular(segments, context)
        # A copy, so an executor that mutates its input cannot change another step's output.
        return Lookup(found, copy.deepcopy(value) if found else None, reason)
    try:
        matches = compiled.find(dict(context))
    except Exception as exc:  # filters and arithmetic can fail on unexpected data types
        raise MappingError(
            f"{where}: key {key!r}: path {expr!r} could not be evaluated: {exc}",
            details={"where": where, "key": key, "path": expr},
        ) from exc
    values = [copy.deepcopy(match.value) for match in matches]
    return Lookup(bool(values), values, "" if values else "no match")


def evaluate(expr: str, context: Mapping[str, Any], *, where: str, key: str = "") -> Any:
    """Evaluate one path: the value for a singular path, a list of matches otherwise.

    Raises MappingError naming `where`, the key and the path when a singular path finds nothing.
    """
    found = lookup(expr, context, where=where, key=key)
    if not found.matched and is_singular(expr):
        raise MappingError(
            f"{where}: key {key!r}: path {expr!r} matched nothing ({found.reason})",
            details={"where": where, "key": key, "path": expr, "reason": found.reason},
        )
    return found.value
