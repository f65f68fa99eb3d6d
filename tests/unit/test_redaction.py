"""Step input/output logging never shows secret-looking values."""

from __future__ import annotations

from typing import Any

import pytest

from engine.security.redaction import REDACTED, redact


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"api_key": "k", "text": "t"}, {"api_key": REDACTED, "text": "t"}),
        ({"Authorization": "Bearer x"}, {"Authorization": REDACTED}),
        ({"nested": [{"password": "p", "ok": 1}]}, {"nested": [{"password": REDACTED, "ok": 1}]}),
        (
            {"refresh_token": "r", "client-secret": "s"},
            {"refresh_token": REDACTED, "client-secret": REDACTED},
        ),
        ({"tokens_used": 5}, {"tokens_used": REDACTED}),
        ([1, "a", None], [1, "a", None]),
        ("plain", "plain"),
    ],
)
def test_secret_looking_keys_are_redacted_at_any_depth(value: Any, expected: Any) -> None:
    """Keys that look like secrets lose their values; everything else is kept as is."""
    assert redact(value) == expected


def test_long_strings_are_cut() -> None:
    """Logged values stay bounded."""
    out = redact({"text": "x" * 5000}, max_string=10)
    assert out["text"].startswith("x" * 10) and "5000 chars" in out["text"]
