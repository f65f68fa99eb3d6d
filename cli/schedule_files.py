"""Operator schedules shipped as files: `definitions/schedules/<id>.json`.

Each file is one schedule the app itself owns (user_id null; its jobs belong to no user):

    {"id": "nightly_demo", "workflow_id": "demo_offline_v1", "cron": "0 3 * * *",
     "timezone": "UTC", "input_data": {...}, "active": true}

Exactly one of `cron`, `interval_seconds` or `rrule`; optional `workflow_version` (absent:
the workflow's default at each firing), `catch_up` ('latest' or 'none', default 'latest'),
`active` (default true) and `description`. They are checked as the API checks a schedule (the
rule parses in Prefect's own models, the timezone is an IANA name, the interval is not below
MIN_SCHEDULE_INTERVAL_SECONDS, input_data fits the workflow's input_schema) and synced by
`supaflow definitions sync` into schedules rows named by the id (upsert by name). A file
removed later leaves its row as it is (pause it with `"active": false`).
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from psycopg.types.json import Jsonb

from engine.db.store import JobStore
from engine.definitions.inputs import input_problems
from engine.definitions.sub_workflow_checks import StoredWorkflows
from engine.errors import Problem
from engine.schedule_rules import check_rule
from engine.settings import get_settings

SCHEDULE_FILE_KEYS = frozenset(
    {
        "id", "description", "workflow_id", "workflow_version", "cron", "interval_seconds",
        "rrule", "timezone", "input_data", "active", "catch_up",
    }
)  # fmt: skip
#: What a schedules row holds of a file (the columns a sync writes and a diff compares).
ROW_KEYS = (
    "workflow_id", "workflow_version", "kind", "cron", "interval_seconds", "rrule", "timezone",
    "input_data", "active", "catch_up",
)  # fmt: skip
_ID = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")


def _field_problems(raw: dict[str, Any]) -> list[Problem]:
    """The fields' types: id, workflow_id, input_data, active, catch_up, workflow_version."""
    problems = []
    if not isinstance(raw.get("id"), str) or not _ID.match(raw["id"]):
        problems.append(Problem("id", "must be 1-100 letters, digits, '_', '-' or '.'"))
    if not isinstance(raw.get("workflow_id"), str):
        problems.append(Problem("workflow_id", "must be a workflow id"))
    if not isinstance(raw.get("input_data", {}), dict):
        problems.append(Problem("input_data", "must be an object"))
    if type(raw.get("active", True)) is not bool:
        problems.append(Problem("active", "must be true or false"))
    if raw.get("catch_up", "latest") not in ("latest", "none"):
        problems.append(Problem("catch_up", "must be 'latest' or 'none'"))
    version = raw.get("workflow_version")
    if version is not None and (type(version) is not int or version < 1):
        problems.append(Problem("workflow_version", "must be an integer >= 1"))
    unknown = set(raw) - SCHEDULE_FILE_KEYS
    if unknown:
        problems.append(Problem("(file)", f"unknown keys: {sorted(unknown)}"))
    return problems


def _rule_problems(raw: dict[str, Any]) -> tuple[str | None, list[Problem]]:
    """The rule's kind, or None and its problems (the API's checks)."""
    interval = raw.get("interval_seconds")
    if interval is not None and (type(interval) not in (int, float) or isinstance(interval, bool)):
        return None, [Problem("interval_seconds", "must be a number of seconds")]
    texts = {k: raw.get(k) for k in ("cron", "rrule", "timezone")}
    for key, value in texts.items():
        if value is not None and not isinstance(value, str):
            return None, [Problem(key, "must be a string")]
    rule, problems = check_rule(
        cron=texts["cron"],
        interval_seconds=None if interval is None else float(interval),
        rrule=texts["rrule"],
        timezone=texts["timezone"] or "UTC",
        min_interval_seconds=get_settings().min_schedule_interval_seconds,
    )
    return (None if rule is None else rule.kind), problems


def _input_problems(
    raw: dict[str, Any], workflows: Mapping[str, Any], stored: StoredWorkflows | None
) -> list[Problem]:
    """The workflow must exist (in the files, or stored); input_data must fit its schema."""
    wid = raw["workflow_id"]
    definition = workflows.get(wid)
    if definition is None and stored is not None:
        definition = stored.definitions.get(wid)
        if definition is None:
            return [Problem("workflow_id", f"workflow '{wid}' does not exist")]
        version = raw.get("workflow_version")
        if version is not None and version not in stored.versions.get(wid, frozenset()):
            return [Problem("workflow_version", f"workflow '{wid}' has no version {version}")]
    if not isinstance(definition, dict):
        return []  # `definitions validate` without a database: not in the files, unknown
    schema = definition.get("input_schema") or {"type": "object"}
    return [
        Problem("input_data" + ("" if p.location == "/" else p.location), p.message)
        for p in input_problems(schema, raw.get("input_data", {}))
    ]


def load_schedules(
    directory: Path,
    workflows: Mapping[str, Any],
    stored: StoredWorkflows | None,
    problems: list[Problem],
    read_json: Callable[[Path, list[Problem], Path], Any],
) -> dict[str, dict[str, Any]]:
    """Every schedule file as its row's columns, by id; problems name the file and field.

    `workflows` are the workflow definitions in the files, by id."""
    rows: dict[str, dict[str, Any]] = {}
    root = directory.parent
    for path in sorted((directory / "schedules").glob("*.json")):
        raw = read_json(path, problems, root)
        if raw is None:
            continue
        where = str(path.relative_to(root))
        if not isinstance(raw, dict):
            problems.append(Problem(where, "must be a JSON object"))
            continue
        found = _field_problems(raw)
        kind, rule_problems = _rule_problems(raw)
        found += rule_problems
        if not found:
            found = _input_problems(raw, workflows, stored)
        problems.extend(Problem(f"{where}: {p.location}", p.message) for p in found)
        if found or kind is None:
            continue
        if raw["id"] in rows:
            problems.append(Problem(where, f"duplicate schedule id '{raw['id']}'"))
        rows[raw["id"]] = _row(raw, kind)
    return rows


def _row(raw: dict[str, Any], kind: str) -> dict[str, Any]:
    interval = raw.get("interval_seconds")
    return {
        "workflow_id": raw["workflow_id"],
        "workflow_version": raw.get("workflow_version"),
        "kind": kind,
        "cron": raw.get("cron"),
        "interval_seconds": None if interval is None else float(interval),
        "rrule": raw.get("rrule"),
        "timezone": raw.get("timezone") or "UTC",
        "input_data": raw.get("input_data", {}),
        "active": raw.get("active", True),
        "catch_up": raw.get("catch_up", "latest"),
    }


def sync_schedules(store: JobStore, rows: Mapping[str, dict[str, Any]]) -> list[tuple[str, str]]:
    """Upsert each operator schedule by name; (name, 'added' or 'updated') of those that
    changed. The Prefect side follows at the next schedule sync pass."""
    changes = []
    for name, row in rows.items():
        params = {**row, "name": name, "input_data": Jsonb(row["input_data"])}
        written = store._fetchone("schedule_fire_operator_upsert", params)
        if written is not None:
            changes.append((name, str(written["changed"])))
    return changes


def diff_schedules(store: JobStore, rows: Mapping[str, dict[str, Any]]) -> list[str]:
    """What `sync_schedules` would change: a heading per schedule and a diff of its JSON."""
    current = {
        r["name"]: {k: r[k] for k in ROW_KEYS}
        for r in store._fetchall("schedule_fire_operator_list", {})
    }
    out: list[str] = []
    for name, row in rows.items():
        old = current.get(name)
        if old == row:
            continue
        out.append(f"schedule {name}: {'added' if old is None else 'updated'}")
        before = [] if old is None else json.dumps(old, indent=2, sort_keys=True).splitlines()
        after = json.dumps(row, indent=2, sort_keys=True).splitlines()
        out.extend(difflib.unified_diff(before, after, "stored", "file", lineterm=""))
    return out
