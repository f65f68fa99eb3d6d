"""Making untrusted text safe to place inside prompts, messages and logs."""

from __future__ import annotations

import re
import string
import unicodedata
from collections.abc import Mapping
from typing import Any

# Control characters (C0, DEL, C1) except tab and newline, plus the Unicode line/paragraph
# separators and bidirectional overrides that can hide text from a reader.
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_PLACEHOLDER_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def strip_control(text: str, *, keep_newlines: bool = True) -> str:
    """`text` without control characters (tab and newline kept unless told otherwise)."""
    cleaned = _CONTROL_RE.sub("", text)
    if not keep_newlines:
        cleaned = cleaned.replace("\n", " ").replace("\t", " ")
    return cleaned


def neutralise_braces(text: str) -> str:
    """Braces turned into parentheses, so a value can never open a template placeholder."""
    return text.replace("{", "(").replace("}", ")")


def sanitise_value(value: Any, *, max_chars: int) -> str:
    """A template variable as safe text: stringified, NFC-normalised, control characters
    stripped, braces neutralised, cut to `max_chars` (marked with an ellipsis)."""
    if isinstance(value, str):
        text = value
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif value is None:
        text = ""
    else:
        text = str(value)
    text = neutralise_braces(strip_control(unicodedata.normalize("NFC", text)))
    if len(text) > max_chars:
        text = text[: max(max_chars - 1, 0)] + "…"
    return text


def render_template(template: str, variables: Mapping[str, Any], *, max_chars: int) -> str:
    """Fill the `{name}` placeholders of `template` with sanitised `variables`.

    `{{` and `}}` are literal braces. Substitution is a single pass, so a value can never
    introduce a placeholder. Raises KeyError (the missing name) when a variable is absent and
    ValueError when the template is malformed.
    """
    pieces: list[str] = []
    for literal, field, spec, conversion in string.Formatter().parse(template):
        pieces.append(literal)
        if field is None:
            continue
        if not _PLACEHOLDER_RE.match(field) or spec or conversion:
            raise ValueError(f"placeholder {{{field}}} must be a plain name")
        if field not in variables:
            raise KeyError(field)
        pieces.append(sanitise_value(variables[field], max_chars=max_chars))
    return "".join(pieces)


def snippet(text: str, limit: int = 200) -> str:
    """A one-line excerpt of upstream text for an error message."""
    flat = " ".join(strip_control(text, keep_newlines=False).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
