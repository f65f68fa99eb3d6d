"""Redaction of secret-looking values before step input/output is logged (pure)."""

from __future__ import annotations

import re
from typing import Any

SECRET_KEY = re.compile(
    r"(secret|token|passw(or)?d|api[_-]?key|authori[sz]ation|cookie|credential|private[_-]?key)",
    re.IGNORECASE,
)
REDACTED = "[redacted]"


def redact(value: Any, *, max_string: int = 2000) -> Any:
    """A copy of `value` with secret-looking keys' values replaced and long strings cut."""
    if isinstance(value, dict):
        return {
            k: REDACTED if SECRET_KEY.search(str(k)) else redact(v, max_string=max_string)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [redact(v, max_string=max_string) for v in value]
    if isinstance(value, str) and len(value) > max_string:
        return value[:max_string] + f"… ({len(value)} chars)"
    return value
