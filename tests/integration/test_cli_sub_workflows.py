"""`supaflow definitions sync` (and validate) on sub-workflow steps: a cycle between
workflows, through the files or through what the tables hold, is refused naming the field
`steps[i].workflow.workflow_id` and the cycle; so is a child (or version) that does not exist.
Nothing is written when anything is refused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
import pytest
from dbfixtures import insert_workflow
from typer.testing import CliRunner

from cli.definition_files import load_definitions, sync_definitions
from cli.main import app
from engine.db.connection import shared_store
from engine.errors import DefinitionError

runner = CliRunner()
LEAF: dict[str, Any] = {"steps": [{"id": "a", "sleep": {"seconds": 1}}]}


def calling(child: str, version: int | None = None) -> dict[str, Any]:
    """A definition whose one step starts `child` (at `version`)."""
    call: dict[str, Any] = {"workflow_id": child}
    if version is not None:
        call["version"] = version
    return {"steps": [{"id": "kid", "workflow": call, "input": {"n.$": "$.input.n"}}]}


def folder(tmp_path: Path, **workflows: dict[str, Any]) -> Path:
    """A definitions folder holding these workflows (no transformers)."""
    root = tmp_path / "definitions"
    (root / "transformers").mkdir(parents=True)
    (root / "workflows").mkdir()
    for wid, definition in workflows.items():
        body = {"id": wid, "description": None, "definition": definition}
        (root / "workflows" / f"{wid}.json").write_text(json.dumps(body))
    return root


def refused(directory: Path) -> list[tuple[str, str]]:
    """The problems a sync refuses the folder with."""
    with pytest.raises(DefinitionError) as raised:
        sync_definitions(shared_store(), directory)
    return [(p.location, p.message) for p in raised.value.problems]


def test_a_cycle_in_the_files_is_refused(
    engine_env: str, db: psycopg.Connection[Any], tmp_path: Path
) -> None:
    """a -> b -> a: both steps are flagged with the cycle, by validate and by sync, and no
    workflow is written."""
    directory = folder(tmp_path, wf_a=calling("wf_b"), wf_b=calling("wf_a"))
    where = "definitions/workflows/{}.json: definition.steps[0].workflow.workflow_id"
    expected = [
        (where.format("wf_a"), "workflow cycle: 'wf_a' -> 'wf_b' -> 'wf_a'"),
        (where.format("wf_b"), "workflow cycle: 'wf_b' -> 'wf_a' -> 'wf_b'"),
    ]
    assert [(p.location, p.message) for p in load_definitions(directory).problems] == expected
    assert refused(directory) == expected
    result = runner.invoke(app, ["definitions", "validate", "--directory", str(directory)])
    assert result.exit_code == 1 and "workflow cycle" in result.output
    count = db.execute("select count(*) from public.workflows").fetchone()
    assert count is not None and count[0] == 0


def test_a_cycle_through_a_stored_workflow_is_refused(
    engine_env: str, db: psycopg.Connection[Any], tmp_path: Path
) -> None:
    """The table holds wf_b -> wf_a; syncing wf_a -> wf_b closes the cycle: refused."""
    insert_workflow(db, "wf_b", calling("wf_a"))
    directory = folder(tmp_path, wf_a=calling("wf_b"))
    assert refused(directory) == [
        (
            "definitions/workflows/wf_a.json: definition.steps[0].workflow.workflow_id",
            "workflow cycle: 'wf_a' -> 'wf_b' -> 'wf_a'",
        )
    ]


def test_children_must_exist(engine_env: str, db: psycopg.Connection[Any], tmp_path: Path) -> None:
    """Sync refuses an unknown child and a version the child does not have; validate (no
    database) cannot know and lets them pass; a stored child at its version syncs."""
    insert_workflow(db, "wf_stored", LEAF)
    directory = folder(tmp_path, wf_p=calling("wf_nowhere"), wf_q=calling("wf_stored", 2))
    where = "definitions/workflows/{}.json: definition.steps[0].workflow.workflow_id"
    assert refused(directory) == [
        (where.format("wf_p"), "unknown workflow 'wf_nowhere'"),
        (where.format("wf_q"), "workflow 'wf_stored' has no version 2"),
    ]
    assert load_definitions(directory).problems == []
    good = folder(
        tmp_path / "good", wf_q=calling("wf_stored", 1), wf_new=calling("wf_leaf"), wf_leaf=LEAF
    )
    changes = {c.id: c.outcome for c in sync_definitions(shared_store(), good)}
    assert changes == {"wf_q": "added", "wf_new": "added", "wf_leaf": "added"}
