"""The definitions the project ships (`definitions/`): load, check, and sync into the tables.

Layout: `definitions/transformers/<id>.json` holds one transformers row
(`id, type, description, config, target_function`); `definitions/workflows/<id>.json` holds
`{"id", "description", "definition"}`. Every file is checked with the same checks the API
runs; sync refuses to write anything if any file has a problem.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.db.store import JobStore
from engine.definitions.checks import check_definition
from engine.errors import DefinitionError, Problem
from engine.settings import PROJECT_ROOT
from tasks.registry import CATALOG

DEFAULT_DIR = PROJECT_ROOT / "definitions"


@dataclass
class DefinitionSet:
    """Everything loaded from a definitions folder, and every problem found in it."""

    workflows: dict[str, dict[str, Any]] = field(default_factory=dict)
    transformers: dict[str, dict[str, Any]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)


def _read_json(path: Path, problems: list[Problem], root: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        problems.append(Problem(str(path.relative_to(root)), f"not valid JSON: {exc}"))
        return None


def load_definitions(
    directory: Path = DEFAULT_DIR, *, extra_transformer_ids: set[str] | None = None
) -> DefinitionSet:
    """Load and check every definition file; problems name the file and the field."""
    result = DefinitionSet()
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
        unknown = set(raw) - {"id", "description", "definition"}
        if unknown:
            result.problems.append(Problem(where, f"unknown keys: {sorted(unknown)}"))
        _, problems = check_definition(raw.get("definition"), transformer_ids=known)
        result.problems.extend(
            Problem(f"{where}: definition.{p.location}", p.message) for p in problems
        )
        if raw["id"] in result.workflows:
            result.problems.append(Problem(where, f"duplicate workflow id '{raw['id']}'"))
        result.workflows[raw["id"]] = raw
    return result


def sync_definitions(store: JobStore, directory: Path = DEFAULT_DIR) -> dict[str, list[str]]:
    """Upsert every transformer, then every workflow; refuse all if any is invalid.

    Returns the ids whose rows changed, by table.
    """
    loaded = load_definitions(directory, extra_transformer_ids=set(store.transformer_ids()))
    if loaded.problems:
        raise DefinitionError("definitions are invalid; nothing was synced", loaded.problems)
    changed: dict[str, list[str]] = {"transformers": [], "workflows": []}
    for tid, row in loaded.transformers.items():
        if store.upsert_transformer(
            tid, row["type"], row.get("description"), row["config"], row["target_function"]
        ):
            changed["transformers"].append(tid)
    for wid, row in loaded.workflows.items():
        if store.upsert_workflow(wid, row.get("description"), row["definition"]):
            changed["workflows"].append(wid)
    return changed
