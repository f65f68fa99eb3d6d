"""Opaque keyset cursors for GET /jobs (pure)."""

from __future__ import annotations

import base64
import json
from datetime import datetime
from uuid import UUID

from fastapi.exceptions import RequestValidationError


def encode_cursor(created_at: datetime, job_id: str) -> str:
    """The cursor pointing after this job in newest-first order."""
    raw = json.dumps([created_at.isoformat(), str(job_id)], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def cursor_parts(parts: object) -> tuple[datetime, str]:
    """The (created_at, job id) of a decoded cursor; ValueError unless `parts` is exactly what
    `encode_cursor` writes: two strings, an ISO time with its offset and a job's UUID."""
    if not (isinstance(parts, list) and len(parts) == 2):
        raise ValueError("a cursor holds two parts")
    at, job_id = parts
    if not (isinstance(at, str) and isinstance(job_id, str)):
        raise ValueError("both cursor parts are strings")
    created_at = datetime.fromisoformat(at)
    if created_at.tzinfo is None:
        # A time without an offset would be read in the database session's time zone.
        raise ValueError("the cursor time has no offset")
    return created_at, str(UUID(job_id))


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """Parse a cursor from `encode_cursor`; RequestValidationError naming `cursor` otherwise.

    A bad cursor is answered like any other bad query parameter (422 `invalid_request`,
    details `[{location: "query.cursor", ...}]`), the same as a cursor that is too long.
    """
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        parts = json.loads(base64.urlsafe_b64decode(padded.encode()).decode())
        return cursor_parts(parts)
    except ValueError as exc:
        raise RequestValidationError(
            [
                {
                    "loc": ("query", "cursor"),
                    "msg": "not a cursor returned by GET /jobs",
                    "type": "value_error",
                }
            ]
        ) from exc
