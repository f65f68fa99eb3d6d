"""Fixtures of the worker tests."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _client_retries(prefect_client_retries: None) -> None:
    """Every test here talks to the session's Prefect server: its client retries a busy 503."""
