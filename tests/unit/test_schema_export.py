"""Unit tests of the published workflow JSON Schema."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from examples import DESIGN_EXAMPLE
from jsonschema import Draft202012Validator

from engine.definitions.schema import (
    SCHEMA_ID,
    SCHEMA_PATH,
    schema_text,
    workflow_json_schema,
    write_schema,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_committed_schema_is_current() -> None:
    """The committed schema file equals a fresh export (regenerate with write_schema)."""
    committed = (REPO_ROOT / SCHEMA_PATH).read_text(encoding="utf-8")
    assert committed == schema_text()


def test_schema_header() -> None:
    """The schema names its dialect, id, title and description, and is itself valid."""
    schema = workflow_json_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == SCHEMA_ID
    assert schema["title"] and schema["description"]
    Draft202012Validator.check_schema(schema)


def test_write_schema(tmp_path: Path) -> None:
    """write_schema creates folders and writes pretty JSON ending in a newline."""
    target = tmp_path / "a" / "b" / "workflow.schema.json"
    write_schema(target)
    text = target.read_text(encoding="utf-8")
    assert text == schema_text()
    assert text.endswith("}\n")
    assert '\n  "$id"' in text


def test_design_example_validates() -> None:
    """The example shape from DESIGN.md is valid against the published schema."""
    assert list(Draft202012Validator(workflow_json_schema()).iter_errors(DESIGN_EXAMPLE)) == []


def _broken(change: str) -> dict[str, Any]:
    raw = copy.deepcopy(DESIGN_EXAMPLE)
    if change == "extra-top":
        raw["surprise"] = 1
    elif change == "bad-strategy":
        raw["retry"]["strategy"] = "random"
    elif change == "no-steps":
        raw["steps"] = []
    elif change == "bad-step-id":
        raw["steps"][0]["id"] = "9lives"
    elif change == "bad-retry-on":
        raw["retry"]["retry_on"] = ["sometimes"]
    return raw


@pytest.mark.parametrize(
    "change", ["extra-top", "bad-strategy", "no-steps", "bad-step-id", "bad-retry-on"]
)
def test_schema_rejects_broken_definitions(change: str) -> None:
    """Editors using the schema flag the same shape errors the models reject."""
    assert list(Draft202012Validator(workflow_json_schema()).iter_errors(_broken(change)))
