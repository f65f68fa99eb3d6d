"""Fixtures of the end-to-end tests."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.settings import PROJECT_ROOT


@pytest.fixture
def fresh_data_dir() -> Iterator[Path]:
    """A data folder of its own inside the project (the embedded server needs readable
    parents), removed afterwards."""
    path = PROJECT_ROOT / ".data" / f"e2e-{uuid.uuid4().hex[:8]}"
    path.mkdir(parents=True)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
