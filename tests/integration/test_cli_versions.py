"""`definitions sync`, `diff` and `history` with versions: sync says what it added or
versioned, diff says what a sync would change without writing, history lists the versions;
a workflow file may set its default version and disable it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import psycopg
from typer.testing import CliRunner

from cli.definition_files import DEFAULT_DIR, diff_definitions, sync_definitions
from cli.main import app
from engine.db.connection import shared_store

runner = CliRunner()


def _edited_copy(tmp_path: Path) -> Path:
    """The shipped definitions where the demo workflow's pause step is renamed (a new
    definition), with `default_version: 1` and a new description for a transformer."""
    target = tmp_path / "definitions"
    shutil.copytree(DEFAULT_DIR, target)
    wf_path = target / "workflows" / "demo_offline_v1.json"
    wf = json.loads(wf_path.read_text())
    wf["definition"]["steps"][0]["input"]["note"] = "v2"
    wf["default_version"] = 1
    wf_path.write_text(json.dumps(wf))
    tr_path = target / "transformers" / "json-reshape.json"
    tr = json.loads(tr_path.read_text())
    tr["description"] = "reworded"
    tr_path.write_text(json.dumps(tr))
    return target


def test_sync_and_diff_say_what_changes(
    engine_env: str, db: psycopg.Connection[Any], tmp_path: Path
) -> None:
    """After a sync of the shipped files, the edited copy diffs as a new version of the
    workflow and an update of the transformer; diff writes nothing; sync then creates
    version 2 while default_version keeps new jobs on 1; a second sync changes nothing."""
    store = shared_store()
    sync_definitions(store)
    edited = _edited_copy(tmp_path)
    lines = diff_definitions(store, edited)
    assert "workflow demo_offline_v1: new version 2 (definition changed)" in lines
    assert "transformer json-reshape: updated (version 1 stays)" in lines
    assert any(line.startswith("+") and '"note": "v2"' in line for line in lines)
    assert db.execute(
        "select version from public.workflows where id = 'demo_offline_v1'"
    ).fetchone() == (1,)

    result = runner.invoke(app, ["definitions", "sync", "--directory", str(edited)])
    assert result.exit_code == 0, result.output
    assert "workflow demo_offline_v1: new version (version 2)" in result.output
    assert "transformer json-reshape: updated (version 1)" in result.output
    row = db.execute(
        "select version, default_version from public.workflows where id = 'demo_offline_v1'"
    ).fetchone()
    assert row == (2, 1)
    assert diff_definitions(store, edited) == []
    again = runner.invoke(app, ["definitions", "sync", "--directory", str(edited)])
    assert "synced: 0 changed" in again.output

    history = runner.invoke(app, ["definitions", "history", "demo_offline_v1"])
    assert history.exit_code == 0, history.output
    lines = history.output.splitlines()
    assert [line.split()[:3] for line in lines] == [
        ["workflow", "demo_offline_v1", "v1"],
        ["workflow", "demo_offline_v1", "v2"],
    ]
    assert lines[0].endswith("default") and lines[1].endswith("current")
    missing = runner.invoke(app, ["definitions", "history", "nope"])
    assert missing.exit_code == 1 and "no workflow or transformer 'nope'" in missing.output


def test_a_workflow_file_can_disable_the_workflow(
    engine_env: str, db: psycopg.Connection[Any], tmp_path: Path
) -> None:
    """`"enabled": false` in the file is synced to the row (no new version)."""
    target = tmp_path / "definitions"
    shutil.copytree(DEFAULT_DIR, target)
    path = target / "workflows" / "demo_offline_v1.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "enabled": False}))
    changes = sync_definitions(shared_store(), target)
    assert any(c.id == "demo_offline_v1" and c.outcome == "added" for c in changes)
    row = db.execute(
        "select enabled, version from public.workflows where id = 'demo_offline_v1'"
    ).fetchone()
    assert row == (False, 1)


def test_bad_flags_in_a_workflow_file_are_named(tmp_path: Path) -> None:
    """A default_version that is not a version number, or an enabled that is not a
    boolean, is a problem naming the file and the field; nothing is synced."""
    target = tmp_path / "definitions"
    shutil.copytree(DEFAULT_DIR, target)
    path = target / "workflows" / "demo_offline_v1.json"
    path.write_text(
        json.dumps({**json.loads(path.read_text()), "default_version": 0, "enabled": "no"})
    )
    result = runner.invoke(app, ["definitions", "validate", "--directory", str(target)])
    assert result.exit_code == 1
    out = " ".join(result.output.split())  # the console wraps long lines
    assert "demo_offline_v1.json: default_version: must be an integer >= 1" in out
    assert "demo_offline_v1.json: enabled: must be true or false" in out
