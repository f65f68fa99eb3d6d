"""Webhook signatures: round trip, tampering, replay window, header handling."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from engine.security.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign, verify

SECRET = b"whsec-test"
BODY = b'{"job_id":"j1","status":"completed"}'
TS = 1_800_000_000


def test_sign_produces_documented_headers() -> None:
    """The signature is v1=hex(HMAC-SHA256(secret, "<ts>.<body>"))."""
    headers = sign(SECRET, TS, BODY)
    expected = hmac.new(SECRET, f"{TS}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert headers == {TIMESTAMP_HEADER: str(TS), SIGNATURE_HEADER: f"v1={expected}"}


def test_round_trip() -> None:
    """What sign produces, verify accepts (header names in any case)."""
    headers = {k.lower(): v for k, v in sign(SECRET, TS, BODY).items()}
    assert verify(SECRET, headers, BODY, now=TS + 10)


def _tampered(change: str) -> tuple[bytes, dict[str, str], bytes, float]:
    headers = sign(SECRET, TS, BODY)
    secret, body, now = SECRET, BODY, float(TS)
    if change == "body":
        body = BODY.replace(b"completed", b"failed")
    elif change == "secret":
        secret = b"other"
    elif change == "timestamp":
        headers[TIMESTAMP_HEADER] = str(TS + 1)
    elif change == "signature":
        headers[SIGNATURE_HEADER] = "v1=" + "0" * 64
    elif change == "scheme":
        headers[SIGNATURE_HEADER] = headers[SIGNATURE_HEADER].replace("v1=", "v0=")
    elif change == "too_old":
        now = TS + 301
    elif change == "future":
        now = TS - 301
    elif change == "missing":
        del headers[SIGNATURE_HEADER]
    elif change == "bad_timestamp":
        headers[TIMESTAMP_HEADER] = "12a"
    return secret, headers, body, now


@pytest.mark.parametrize(
    "change",
    [
        "body",
        "secret",
        "timestamp",
        "signature",
        "scheme",
        "too_old",
        "future",
        "missing",
        "bad_timestamp",
    ],
)
def test_tampering_is_rejected(change: str) -> None:
    """Any change to body, secret, timestamp or signature, or a stale timestamp, fails."""
    secret, headers, body, now = _tampered(change)
    assert not verify(secret, headers, body, now=now)


def test_rotation_accepts_any_listed_signature() -> None:
    """Several comma-separated v1 values: one valid signature is enough."""
    headers = sign(SECRET, TS, BODY)
    old = sign(b"old-secret", TS, BODY)[SIGNATURE_HEADER]
    headers[SIGNATURE_HEADER] = f"{old}, {headers[SIGNATURE_HEADER]}"
    assert verify(SECRET, headers, BODY, now=TS)
