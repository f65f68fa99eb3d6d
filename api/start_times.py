"""Delayed starts of POST /workflows/start: `start_at` or `delay_seconds`, checked against the
clock and the configured horizon (MAX_START_DELAY_SECONDS).

The body's types are the model's (api/models.py StartRequest: an RFC 3339 string with a
timezone offset, a number above 0); what depends on the clock and the settings is checked
here, each problem a 422 `invalid_request` naming its field, before anything is written.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from fastapi.exceptions import RequestValidationError

#: A `start_at` this far in the past still starts (at once): the caller's clock, or the
#: request's time in flight, may be a little behind ours.
PAST_GRACE_SECONDS = 5.0

#: RFC 3339 date-time (section 5.6): date, `T` (or a space), time, fraction, offset.
_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(?P<offset>[Zz]|[+-]\d{2}:\d{2})?"
)


def parse_start_at(value: Any) -> Any:
    """The `start_at` value for the model: an RFC 3339 string with an offset, parsed to an
    aware datetime in UTC (so equal instants hash alike for Idempotency-Key). None stays
    None; anything else raises ValueError saying what is wanted."""
    if value is None or isinstance(value, datetime):
        return value
    if not isinstance(value, str):
        raise ValueError("start_at must be an RFC 3339 date-time string")
    match = _RFC3339.fullmatch(value)
    if match is None:
        raise ValueError("start_at must be an RFC 3339 date-time, e.g. 2026-12-08T09:30:00Z")
    if match.group("offset") is None:
        raise ValueError(
            "start_at must have a timezone offset (Z or +hh:mm); naive times are refused"
        )
    return datetime.fromisoformat(value.replace("z", "Z").replace("t", "T")).astimezone(UTC)


def _problem(field: str, message: str, kind: str) -> dict[str, Any]:
    return {"loc": ("body", field), "msg": message, "type": kind}


def start_problems(
    start_at: datetime | None,
    delay_seconds: float | None,
    *,
    horizon_seconds: float,
    now: datetime,
) -> list[dict[str, Any]]:
    """What is wrong with a start's time (pydantic's error shape), empty when nothing.

    Both fields at once; a `start_at` more than PAST_GRACE_SECONDS in the past; either one
    further ahead than `horizon_seconds`."""
    if start_at is not None and delay_seconds is not None:
        message = "give start_at or delay_seconds, not both"
        return [_problem(name, message, "exclusive") for name in ("start_at", "delay_seconds")]
    if delay_seconds is not None and delay_seconds > horizon_seconds:
        return [
            _problem(
                "delay_seconds",
                f"delay_seconds must be at most {horizon_seconds:g} (MAX_START_DELAY_SECONDS)",
                "beyond_horizon",
            )
        ]
    if start_at is None:
        return []
    ahead = (start_at - now).total_seconds()
    if ahead < -PAST_GRACE_SECONDS:
        return [_problem("start_at", "start_at is in the past", "in_the_past")]
    if ahead > horizon_seconds:
        return [
            _problem(
                "start_at",
                f"start_at must be at most {horizon_seconds:g} s ahead (MAX_START_DELAY_SECONDS)",
                "beyond_horizon",
            )
        ]
    return []


def only_in_the_past(problems: list[dict[str, Any]]) -> bool:
    """Whether the one problem is a `start_at` in the past (a replay of an earlier request
    may still be answered: its job exists)."""
    return [p["type"] for p in problems] == ["in_the_past"]


def refuse(problems: list[dict[str, Any]]) -> RequestValidationError:
    """The 422 of these problems (answered as `invalid_request`, each naming its field)."""
    return RequestValidationError(problems)
