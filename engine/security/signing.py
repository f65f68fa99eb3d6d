"""Webhook signatures: HMAC-SHA256 over the timestamp and the exact body bytes.

A receiver recomputes `HMAC-SHA256(secret, f"{timestamp}.{body}")` and compares it with the
`v1=` value of `X-Supaflow-Signature`; the timestamp bounds how long a captured request can be
replayed. Several `v1=` values separated by commas are accepted, so a sender can sign with an
old and a new secret while the secret is rotated.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping

TIMESTAMP_HEADER = "X-Supaflow-Timestamp"
SIGNATURE_HEADER = "X-Supaflow-Signature"
SCHEME = "v1"


def signature(secret: bytes, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of `f"{timestamp}.".encode() + body` under `secret`."""
    message = str(timestamp).encode("ascii") + b"." + body
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def sign(secret: bytes, timestamp: int, body: bytes) -> dict[str, str]:
    """The headers that sign `body` at `timestamp` (unix seconds)."""
    return {
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: f"{SCHEME}={signature(secret, timestamp, body)}",
    }


def _header(headers: Mapping[str, str], name: str) -> str | None:
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    return None


def verify(
    secret: bytes,
    headers: Mapping[str, str],
    body: bytes,
    *,
    tolerance_seconds: int = 300,
    now: float | None = None,
) -> bool:
    """Whether `headers` carry a valid signature of `body` made within the tolerance.

    Header names are matched case-insensitively; the comparison is constant-time.
    """
    raw_ts = _header(headers, TIMESTAMP_HEADER)
    raw_sig = _header(headers, SIGNATURE_HEADER)
    if raw_ts is None or raw_sig is None:
        return False
    raw_ts = raw_ts.strip()
    if not raw_ts.isascii() or not raw_ts.isdigit() or len(raw_ts) > 12:
        return False
    timestamp = int(raw_ts)
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_seconds:
        return False
    expected = signature(secret, timestamp, body).encode("ascii")
    valid = False
    for part in raw_sig.split(","):
        scheme, _, value = part.strip().partition("=")
        if scheme == SCHEME:
            # Compare every candidate (no early exit) so timing reveals nothing.
            valid |= hmac.compare_digest(expected, value.strip().encode("utf-8", "replace"))
    return valid
