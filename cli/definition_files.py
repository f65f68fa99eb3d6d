"""The definitions the project ships (`definitions/`): load, check, and sync into the tables.

Layout: `definitions/transformers/<id>.json` holds one transformers row
(`id, type, description, config, target_function`); `definitions/workflows/<id>.json` holds
`{"id", "description", "definition"}` and optionally `default_version` (the version a start
runs when it names none; absent: the latest) and `enabled` (false: no new jobs);
`definitions/schedules/<id>.json` is an operator schedule (cli/schedule_files.py). Every file is
checked with the same checks the API runs; sync refuses to write anything if any file has a
problem. A changed definition or transformer config becomes a new version (the tables keep
every version); `diff_definitions` says what a sync would change without writing.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cli.schedule_files import diff_schedules, load_schedules, sync_schedules
from engine.db.rows import Upserted
from engine.db.store import JobStore
from engine.db.sub_workflows import stored_workflows
from engine.definitions.checks import check_definition
from engine.definitions.sub_workflow_checks import StoredWorkflows, sub_workflow_problems
from engine.errors import DefinitionError, Problem
from engine.security.destinations import url_destination_problem
from engine.settings import PROJECT_ROOT, get_settings
from tasks.registry import CATALOG

DEFAULT_DIR = PROJECT_ROOT / "definitions"
WORKFLOW_FILE_KEYS = frozenset({"id", "description", "definition", "default_version", "enabled"})


@dataclass
class DefinitionSet:
    """Everything loaded from a definitions folder, and every problem found in it."""

    workflows: dict[str, dict[str, Any]] = field(default_factory=dict)
    transformers: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Operator schedules (definitions/schedules/*.json) as their rows' columns, by id.
    schedules: dict[str, dict[str, Any]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)


def _read_json(path: Path, problems: list[Problem], root: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        problems.append(Problem(str(path.relative_to(root)), f"not valid JSON: {exc}"))
        return None


def _flag_problems(where: str, raw: dict[str, Any]) -> list[Problem]:
    """`default_version` must be a version number (or absent), `enabled` a boolean."""
    problems = []
    default = raw.get("default_version")
    if default is not None and (type(default) is not int or default < 1):
        problems.append(Problem(f"{where}: default_version", "must be an integer >= 1"))
    if type(raw.get("enabled", True)) is not bool:
        problems.append(Problem(f"{where}: enabled", "must be true or false"))
    return problems


def _callback_problems(where: str, definition: Any, problems: list[Problem]) -> list[Problem]:
    """At save, the SSRF policy (HTTP_ALLOWLIST applies) on a valid `on_finish.url`; the
    start checks it again, and the delivery (DNS may change)."""
    target = definition.get("on_finish") if isinstance(definition, dict) else None
    url = target.get("url") if isinstance(target, dict) else None
    if not isinstance(url, str) or any(p.location.startswith("on_finish") for p in problems):
        return []
    problem = url_destination_problem(url, get_settings().http_allowlist)
    return [] if problem is None else [Problem(f"{where}: definition.on_finish.url", problem)]


def _sub_workflow_problems(
    result: DefinitionSet, files: dict[str, str], stored: StoredWorkflows | None
) -> list[Problem]:
    """The `workflow` steps' problems: cycles through children (in the files and, with
    `stored`, through the tables), and children (and versions) that do not exist (`stored`)."""
    saved = {wid: raw.get("definition") for wid, raw in result.workflows.items()}
    found = sub_workflow_problems(
        saved,
        None if stored is None else stored.definitions,
        None if stored is None else stored.versions,
    )
    return [
        Problem(f"{files[wid]}: definition.{p.location}", p.message)
        for wid, problems in found.items()
        for p in problems
    ]


def load_definitions(
    directory: Path = DEFAULT_DIR,
    *,
    extra_transformer_ids: set[str] | None = None,
    stored: StoredWorkflows | None = None,
) -> DefinitionSet:
    """Load and check every definition file; problems name the file and the field.

    `stored` (what the tables hold) is followed for cycles through sub-workflow steps, and
    each step's child (and version) must be in it or in the files; without it (`definitions
    validate`, no database), only cycles among the files are checked."""
    result = DefinitionSet()
    files: dict[str, str] = {}
    root = directory.parent
    for path in sorted((directory / "transformers").glob("*.json")):
        raw = _read_json(path, result.problems, root)
        if raw is None:
            continue
        where = str(path.relative_to(root))
        parsed, problems = CATALOG.check(raw)
        result.problems.extend(Problem(f"{where}: {p.location}", p.message) for p in problems)
        if parsed is not None:
            if parsed.id in result.transformers:
                result.problems.append(Problem(where, f"duplicate transformer id '{parsed.id}'"))
            result.transformers[parsed.id] = raw
    known = set(result.transformers) | (extra_transformer_ids or set())
    for path in sorted((directory / "workflows").glob("*.json")):
        raw = _read_json(path, result.problems, root)
        if raw is None:
            continue
        where = str(path.relative_to(root))
        if not isinstance(raw, dict) or not isinstance(raw.get("id"), str):
            result.problems.append(Problem(where, "needs an 'id' string and a 'definition'"))
            continue
        unknown = set(raw) - WORKFLOW_FILE_KEYS
        if unknown:
            result.problems.append(Problem(where, f"unknown keys: {sorted(unknown)}"))
        result.problems.extend(_flag_problems(where, raw))
        _, problems = check_definition(raw.get("definition"), transformer_ids=known)
        result.problems.extend(
            Problem(f"{where}: definition.{p.location}", p.message) for p in problems
        )
        result.problems.extend(_callback_problems(where, raw.get("definition"), problems))
        if raw["id"] in result.workflows:
            result.problems.append(Problem(where, f"duplicate workflow id '{raw['id']}'"))
        result.workflows[raw["id"]] = raw
        files[raw["id"]] = where
    result.problems.extend(_sub_workflow_problems(result, files, stored))
    definitions = {wid: raw.get("definition") for wid, raw in result.workflows.items()}
    result.schedules = load_schedules(directory, definitions, stored, result.problems, _read_json)
    return result


@dataclass(frozen=True)
class SyncChange:
    """One row a sync wrote: 'added', 'new version' or 'updated' (description or flags)."""

    table: str
    id: str
    outcome: str
    version: int

    def __str__(self) -> str:
        kind = self.table.removesuffix("s")
        if self.table == "schedules":  # not versioned
            return f"{kind} {self.id}: {self.outcome}"
        return f"{kind} {self.id}: {self.outcome} (version {self.version})"


def _workflow_flags(row: dict[str, Any]) -> dict[str, Any]:
    return {"default_version": row.get("default_version"), "enabled": row.get("enabled", True)}


def sync_definitions(store: JobStore, directory: Path = DEFAULT_DIR) -> list[SyncChange]:
    """Upsert every transformer, then every workflow; refuse all if any is invalid.

    Returns what changed (unchanged rows are not listed): running it twice writes nothing
    and creates no version the second time.
    """
    loaded = load_definitions(
        directory,
        extra_transformer_ids=set(store.transformer_ids()),
        stored=stored_workflows(store),
    )
    if loaded.problems:
        raise DefinitionError("definitions are invalid; nothing was synced", loaded.problems)
    # The versions before the sync, read once: sync is an operator's command, not a
    # concurrent writer.
    before = {(r["kind"], r["id"]): int(r["version"]) for r in store.definitions_current()}
    changes: list[SyncChange] = []

    def record(table: str, key: str, version: int | None) -> None:
        if version is not None:
            outcome = Upserted(key, version, before.get((table, key))).outcome
            changes.append(SyncChange(table, key, outcome, version))

    for tid, row in loaded.transformers.items():
        record(
            "transformers",
            tid,
            store.upsert_transformer(
                tid, row["type"], row.get("description"), row["config"], row["target_function"]
            ),
        )
    for wid, row in loaded.workflows.items():
        record(
            "workflows",
            wid,
            store.upsert_workflow(
                wid, row.get("description"), row["definition"], **_workflow_flags(row)
            ),
        )
    for name, outcome in sync_schedules(store, loaded.schedules):
        changes.append(SyncChange("schedules", name, outcome, 0))
    return changes


def _comparable(table: str, raw: dict[str, Any]) -> dict[str, Any]:
    if table == "workflows":
        return {"description": raw.get("description"), "definition": raw.get("definition")} | (
            _workflow_flags(raw)
        )
    keys = ("type", "description", "config", "target_function")
    return {k: raw.get(k) for k in keys}


def _versioned(row: dict[str, Any]) -> dict[str, Any]:
    """The part of a comparable row whose change is a new version (what runs)."""
    return {k: v for k, v in row.items() if k not in ("description", "default_version", "enabled")}


def _lines(value: Any) -> list[str]:
    return json.dumps(value, indent=2, sort_keys=True).splitlines()


def diff_definitions(store: JobStore, directory: Path = DEFAULT_DIR) -> list[str]:
    """What `sync_definitions` would change, as text: a heading per row that differs
    (added / new version / updated) and a unified diff of its JSON. Writes nothing."""
    loaded = load_definitions(
        directory,
        extra_transformer_ids=set(store.transformer_ids()),
        stored=stored_workflows(store),
    )
    if loaded.problems:
        raise DefinitionError("definitions are invalid; sync would refuse them", loaded.problems)
    current = {(r["kind"], r["id"]): r for r in store.definitions_current()}
    out: list[str] = []
    for table, rows in (("transformers", loaded.transformers), ("workflows", loaded.workflows)):
        runs = "definition" if table == "workflows" else "config"
        for key, raw in rows.items():
            new = _comparable(table, raw)
            stored = current.get((table, key))
            old = _comparable(table, stored["row"]) if stored else None
            if old == new:
                continue
            kind = table.removesuffix("s")
            if stored is None or old is None:
                out.append(f"{kind} {key}: added (version 1)")
            elif _versioned(old) != _versioned(new):
                out.append(f"{kind} {key}: new version {stored['version'] + 1} ({runs} changed)")
            else:
                out.append(f"{kind} {key}: updated (version {stored['version']} stays)")
            before = _lines(old) if old is not None else []
            out.extend(difflib.unified_diff(before, _lines(new), "stored", "file", lineterm=""))
    return out + diff_schedules(store, loaded.schedules)
