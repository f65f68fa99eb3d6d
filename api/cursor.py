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


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """Parse a cursor from `encode_cursor`; RequestValidationError naming `cursor` otherwise.

    A bad cursor is answered like any other bad query parameter (422 `invalid_request`,
    details `[{location: "query.cursor", ...}]`), the same as a cursor that is too long.
    """
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        at, job_id = json.loads(base64.urlsafe_b64decode(padded.encode()).decode())
        return datetime.fromisoformat(at), str(UUID(job_id))
    except (ValueError, TypeError) as exc:
        raise RequestValidationError(
            [
                {
                    "loc": ("query", "cursor"),
                    "msg": "not a cursor returned by GET /jobs",
                    "type": "value_error",
                }
            ]
        ) from exc
