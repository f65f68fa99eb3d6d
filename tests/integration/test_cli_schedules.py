"""Operator schedules in `definitions/schedules/*.json`: `supaflow definitions sync` writes
each as a schedules row owned by no user (user_id null, name = the file's id), once; a
changed file updates its row; a bad rule, an input not fitting the workflow's input_schema or
an unknown workflow is refused naming the file and the field, and nothing is written;
`diff` says what a sync would change."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
import pytest
from typer.testing import CliRunner

from cli.definition_files import DEFAULT_DIR, diff_definitions, load_definitions, sync_definitions
from cli.main import app
from engine.db.connection import shared_store
from engine.errors import DefinitionError

runner = CliRunner()
WORKFLOW = {
    "id": "greet",
    "description": None,
    "definition": {
        "input_schema": {
            "type": "object",
            "required": ["name"],
            "properties": {"name": {"type": "string"}},
        },
        "steps": [{"id": "a", "sleep": {"seconds": 1}}],
    },
}
SCHEDULE = {
    "id": "nightly_greet",
    "workflow_id": "greet",
    "cron": "0 3 * * *",
    "timezone": "Europe/Paris",
    "input_data": {"name": "night"},
}


def folder(tmp_path: Path, *schedules: dict[str, Any]) -> Path:
    """A definitions folder with the `greet` workflow and these schedule files."""
    root = tmp_path / "definitions"
    for sub in ("transformers", "workflows", "schedules"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "workflows" / "greet.json").write_text(json.dumps(WORKFLOW))
    for i, schedule in enumerate(schedules):
        (root / "schedules" / f"s{i}.json").write_text(json.dumps(schedule))
    return root


def operator_rows(db: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    return db.execute(
        "select name, user_id, workflow_id, kind, cron, timezone, input_data, active, catch_up"
        " from public.schedules order by name"
    ).fetchall()


def test_sync_writes_each_operator_schedule_once_and_updates_a_changed_one(
    engine_env: str, db: psycopg.Connection[Any], tmp_path: Path
) -> None:
    """The first sync adds the row (no owner, named by the id, active and catch_up
    defaulted); a second writes nothing; a changed file updates the same row."""
    store = shared_store()
    directory = folder(tmp_path, SCHEDULE)
    changes = {(c.table, c.id): c.outcome for c in sync_definitions(store, directory)}
    assert changes[("schedules", "nightly_greet")] == "added"
    expected = ("nightly_greet", None, "greet", "cron", "0 3 * * *", "Europe/Paris")
    assert operator_rows(db) == [(*expected, {"name": "night"}, True, "latest")]
    assert sync_definitions(store, directory) == []
    assert diff_definitions(store, directory) == []

    paused = {**SCHEDULE, "active": False, "cron": "30 4 * * *"}
    directory = folder(tmp_path / "b", paused)
    diff = diff_definitions(store, directory)
    assert diff[0] == "schedule nightly_greet: updated"
    assert any(line.startswith("+") and "30 4 * * *" in line for line in diff)
    assert [str(c) for c in sync_definitions(store, directory)] == [
        "schedule nightly_greet: updated"
    ]
    [row] = operator_rows(db)
    assert (row[4], row[7]) == ("30 4 * * *", False)


@pytest.mark.parametrize(
    ("change", "location"),
    [
        ({"cron": "not a cron"}, "cron"),
        ({"cron": None, "interval_seconds": 1}, "interval_seconds"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"input_data": {"name": 5}}, "input_data/name"),
        ({"input_data": {}}, "input_data/name"),
        ({"workflow_id": "nope"}, "workflow_id"),
        ({"catch_up": "all"}, "catch_up"),
        ({"color": "red"}, "(file)"),
    ],
)
def test_a_bad_schedule_file_is_refused_naming_its_field(
    engine_env: str,
    db: psycopg.Connection[Any],
    tmp_path: Path,
    change: dict[str, Any],
    location: str,
) -> None:
    """The API's checks, on a file: each problem names `schedules/<file>: <field>`; the
    sync writes nothing (not the workflow either)."""
    bad = {k: v for k, v in {**SCHEDULE, **change}.items() if v is not None}
    with pytest.raises(DefinitionError) as raised:
        sync_definitions(shared_store(), folder(tmp_path, bad))
    locations = [p.location for p in raised.value.problems]
    assert f"definitions/schedules/s0.json: {location}" in locations, locations
    assert operator_rows(db) == []
    assert db.execute("select count(*) from public.workflows").fetchone() == (0,)


def test_the_shipped_example_schedule_is_valid_and_inactive() -> None:
    """definitions/schedules/nightly_demo.json passes `definitions validate` and is shipped
    paused, so no stack fires it until an operator turns it on."""
    loaded = load_definitions(DEFAULT_DIR)
    assert loaded.problems == []
    assert loaded.schedules["nightly_demo"]["active"] is False
    result = runner.invoke(app, ["definitions", "validate", "--directory", str(DEFAULT_DIR)])
    assert result.exit_code == 0 and "1 schedule(s)" in result.output
