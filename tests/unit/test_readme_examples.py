"""The definitions the README's control-flow section prints pass the save checks as printed,
with the shipped transformers, and name only shipped workflows as children."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from engine.definitions.checks import check_definition
from engine.settings import PROJECT_ROOT

SECTION = "### Control flow"


def _examples() -> list[dict[str, Any]]:
    readme = (PROJECT_ROOT / "README.md").read_text()
    start = readme.index(SECTION)
    section = readme[start : readme.index("\n### ", start + len(SECTION))]
    return [json.loads(block) for block in re.findall(r"```json\n(.*?)```", section, re.S)]


def _shipped_ids(folder: str) -> set[str]:
    return {
        json.loads(path.read_text())["id"]
        for path in (PROJECT_ROOT / "definitions" / folder).glob("*.json")
    }


def test_the_section_has_an_example_of_each_feature() -> None:
    """Conditions, a switch, a fan-out, a sub-workflow, a default and a job timeout each appear
    in at least one example."""
    text = json.dumps(_examples())
    for marker in ('"when"', '"switch"', '"for_each"', '"workflow"', ".default", "timeout_seconds"):
        assert marker in text, marker


@pytest.mark.parametrize("index", range(len(_examples())))
def test_each_example_passes_the_save_checks(index: int) -> None:
    """No problem is reported for the example, and its child workflows are shipped ones."""
    example = _examples()[index]
    definition, problems = check_definition(example, transformer_ids=_shipped_ids("transformers"))
    assert definition is not None and problems == []
    children = {s["workflow"]["workflow_id"] for s in example["steps"] if "workflow" in s}
    assert children <= _shipped_ids("workflows")
