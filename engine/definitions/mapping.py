"""The mapping language: JSON templates whose ``.$`` keys take JSONPaths (jsonpath-ng).

A template is any JSON value. In a dict, a key ending in ``.$`` holds a JSONPath evaluated over
the context ``{"input": ..., "steps": ..., "job": ...}``; the result is stored under the key
without ``.$``. Every other value is literal, so a string starting with ``$`` under a plain key
stays a string. Lists and nested dicts recurse. Paths themselves (singular or not, which steps
they read) are described in engine.definitions.mapping_paths.

Defaults: next to ``name.$``, ``name.default`` holds a literal JSON value (copied as is, its keys
are not read as paths) used when the path matches nothing. A singular path that finds nothing
then takes the default instead of failing; a non-singular path with no match takes the default
instead of ``[]``. A ``name.default`` without ``name.$`` is an error.

Coalesce: ``name.$`` may hold a non-empty list of paths; the first that matches wins (a singular
path matches when its value exists, even ``null``; any other path when it has a match, and then
gives the list of matches). When none matches, the default if there is one, else an error:
unlike a single non-singular path, a coalesce never yields an empty list on its own.
E.g. ``{"text.$": ["$.steps.short.text", "$.steps.long.text"], "text.default": ""}`` takes the
output of whichever branch ran.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from engine.definitions.mapping_paths import (
    ALL_STEPS,
    CONTEXT_KEYS,
    PathInfo,
    compile_path,
    evaluate,
    is_singular,
    lookup,
    path_info,
    referenced_steps,
    step_reference,
)
from engine.errors import MappingError

__all__ = [
    "ALL_STEPS",
    "CONTEXT_KEYS",
    "DEFAULT_SUFFIX",
    "PATH_SUFFIX",
    "PathField",
    "PathInfo",
    "compile_path",
    "evaluate",
    "is_singular",
    "iter_fields",
    "iter_paths",
    "path_info",
    "referenced_steps",
    "render",
    "step_reference",
    "template_problems",
]

#: Suffix marking a key whose value is a JSONPath (or a list of them: a coalesce).
PATH_SUFFIX = ".$"
#: Suffix marking the default of the path key with the same name.
DEFAULT_SUFFIX = ".default"

_NO_DEFAULT = object()


@dataclass(frozen=True)
class PathField:
    """One ``name.$`` key of a template: where it is, its path(s), and whether it has a default.

    `paths` pairs each path with its own location (``input.x.$`` for a single path,
    ``input.x.$[1]`` for the second path of a coalesce); non-string entries are left out.
    """

    location: str
    paths: tuple[tuple[str, str], ...]
    has_default: bool


def _join(location: str, key: str) -> str:
    return f"{location}.{key}" if location else key


def _is_path_key(key: Any) -> bool:
    return isinstance(key, str) and key.endswith(PATH_SUFFIX)


def _is_default_key(key: Any) -> bool:
    return isinstance(key, str) and key.endswith(DEFAULT_SUFFIX)


def _path_list(value: Any, here: str) -> list[tuple[str, str]]:
    if isinstance(value, str):
        return [(here, value)]
    if isinstance(value, list):
        return [(f"{here}[{i}]", v) for i, v in enumerate(value)]
    return []


def iter_fields(template: Any, location: str = "") -> Iterator[PathField]:
    """Yield every ``name.$`` key of the template as a `PathField`, depth first.

    Defaults are literal, so nothing inside a ``name.default`` value is visited.
    """
    if isinstance(template, Mapping):
        for key, value in template.items():
            here = _join(location, str(key))
            if _is_path_key(key):
                target = key[: -len(PATH_SUFFIX)]
                paths = tuple((w, e) for w, e in _path_list(value, here) if isinstance(e, str))
                yield PathField(here, paths, f"{target}{DEFAULT_SUFFIX}" in template)
            elif not _is_default_key(key):
                yield from iter_fields(value, here)
    elif isinstance(template, list):
        for index, item in enumerate(template):
            yield from iter_fields(item, f"{location}[{index}]")


def iter_paths(template: Any, location: str = "") -> Iterator[tuple[str, str]]:
    """Yield (location, expression) for every JSONPath of the template, depth first.

    Locations look like ``input.url.$``, ``input.items[0].x.$`` or, for the paths of a
    coalesce, ``input.text.$[1]`` (with `location` as prefix).
    """
    for field in iter_fields(template, location):
        yield from field.paths


def _key_problems(template: Mapping[Any, Any], key: Any, here: str) -> list[tuple[str, str]]:
    """The static errors of one ``.$`` or ``.default`` key of a dict template."""
    value = template[key]
    if not _is_path_key(key):
        target = key[: -len(DEFAULT_SUFFIX)]
        if not target:
            return [(here, "a '.default' key needs a name before '.default'")]
        if f"{target}{PATH_SUFFIX}" not in template:
            return [(here, f"{key!r} is the default of {target + PATH_SUFFIX!r}, which is not set")]
        return []
    found: list[tuple[str, str]] = []
    target = key[: -len(PATH_SUFFIX)]
    if not target:
        found.append((here, "a '.$' key needs a name before '.$'"))
    if target in template:
        found.append((here, f"both {target!r} and {key!r} are set; keep only one of them"))
    if isinstance(value, list) and not value:
        found.append((here, "a '.$' list (a coalesce) needs at least one JSONPath"))
    elif not isinstance(value, (str, list)):
        found.append(
            (
                here,
                f"a '.$' key takes a JSONPath string, not {type(value).__name__} "
                "(or a list of JSONPath strings: the first that matches wins)",
            )
        )
    for where, expr in _path_list(value, here):
        if not isinstance(expr, str):
            found.append((where, f"a '.$' list takes JSONPath strings, not {type(expr).__name__}"))
            continue
        try:
            compile_path(expr)
        except MappingError as exc:
            found.append((where, exc.message))
    return found


def template_problems(template: Any, location: str = "") -> list[tuple[str, str]]:
    """Static errors of a template as (location, message): bad keys and unparsable paths.

    Finds: a dict holding both ``a`` and ``a.$``; a ``.$`` key with an empty name or a value
    that is neither a JSONPath string nor a non-empty list of them; a JSONPath that does not
    parse (each path of a coalesce list is checked); an ``a.default`` without ``a.$``.
    """
    found: list[tuple[str, str]] = []
    if isinstance(template, Mapping):
        for key, value in template.items():
            here = _join(location, str(key))
            if _is_path_key(key) or _is_default_key(key):
                found.extend(_key_problems(template, key, here))
            else:
                found.extend(template_problems(value, here))
    elif isinstance(template, list):
        for index, item in enumerate(template):
            found.extend(template_problems(item, f"{location}[{index}]"))
    return found


def _coalesce(
    paths: list[Any], default: Any, context: Mapping[str, Any], *, where: str, key: str
) -> Any:
    """The value of the first path that matches, else the default, else a MappingError."""
    reasons: list[str] = []
    for expr in paths:
        found = lookup(expr, context, where=where, key=key)
        if found.matched:
            return found.value
        reasons.append(f"{expr!r}: {found.reason}")
    if default is not _NO_DEFAULT:
        return copy.deepcopy(default)
    raise MappingError(
        f"{where}: key {key!r}: none of the paths matched ({'; '.join(reasons)})",
        details={"where": where, "key": key, "paths": list(paths)},
    )


def _render_field(
    template: Mapping[Any, Any], key: str, context: Mapping[str, Any], *, where: str, here: str
) -> Any:
    """The value of the ``key`` (``name.$``) field, with its default and coalesce list."""
    problems = _key_problems(template, key, here)
    if problems:
        location, message = problems[0]
        raise MappingError(f"{where}: key {location!r}: {message}")
    value = template[key]
    target = key[: -len(PATH_SUFFIX)]
    default = template.get(f"{target}{DEFAULT_SUFFIX}", _NO_DEFAULT)
    if isinstance(value, list):
        return _coalesce(value, default, context, where=where, key=here)
    if default is _NO_DEFAULT:
        return evaluate(value, context, where=where, key=here)
    found = lookup(value, context, where=where, key=here)
    return found.value if found.matched else copy.deepcopy(default)


def render(template: Any, context: Mapping[str, Any], *, where: str, location: str = "") -> Any:
    """Build a value from `template` over `context` (a dict with input, steps and job).

    `where` names the user of the template in error messages (e.g. ``step 'notify'``);
    `location` prefixes the key locations in those messages.
    """
    if isinstance(template, Mapping):
        result: dict[str, Any] = {}
        for key, value in template.items():
            here = _join(location, str(key))
            if _is_path_key(key):
                target = key[: -len(PATH_SUFFIX)]
                result[target] = _render_field(template, key, context, where=where, here=here)
            elif _is_default_key(key):
                problems = _key_problems(template, key, here)
                if problems:
                    raise MappingError(f"{where}: key {here!r}: {problems[0][1]}")
            else:
                result[str(key)] = render(value, context, where=where, location=here)
        return result
    if isinstance(template, list):
        return [
            render(item, context, where=where, location=f"{location}[{index}]")
            for index, item in enumerate(template)
        ]
    return copy.deepcopy(template)
