"""Access to the engine's SQL, kept in `engine/db/sql/*.sql` files."""

from __future__ import annotations

from functools import cache
from importlib import resources


@cache
def load_sql(name: str) -> str:
    """The text of `engine/db/sql/<name>.sql` (read once per process)."""
    return resources.files("engine.db").joinpath("sql", f"{name}.sql").read_text(encoding="utf-8")
