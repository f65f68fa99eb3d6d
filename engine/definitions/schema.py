"""The published JSON Schema of workflow definitions, generated from the pydantic models.

`definitions/schema/workflow.schema.json` is written by `write_schema` (CLI:
``supaflow definitions schema``); a unit test keeps the committed file equal to a fresh export.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from engine.definitions.models import WorkflowDefinition

SCHEMA_ID = "https://supaflow.dev/schema/workflow.schema.json"
SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"

#: Where the committed copy lives, relative to the repository root.
SCHEMA_PATH = Path("definitions/schema/workflow.schema.json")


def workflow_json_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of a workflow definition."""
    body = WorkflowDefinition.model_json_schema()
    return {
        "$schema": SCHEMA_DIALECT,
        "$id": SCHEMA_ID,
        **body,
        "title": "Supaflow workflow definition",
        "description": (
            "A workflow: the input it accepts (input_schema), its steps (each a transformer "
            "with an input mapping), retry policy and how its result is built (output)."
        ),
    }


def schema_text() -> str:
    """The schema as written to disk: two-space indented JSON with a trailing newline."""
    return json.dumps(workflow_json_schema(), indent=2, ensure_ascii=False) + "\n"


def write_schema(path: Path) -> None:
    """Write the schema to `path`, creating its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(schema_text(), encoding="utf-8")
