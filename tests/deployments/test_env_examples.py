"""The environment examples in deployments/env name only variables something reads."""

from __future__ import annotations

import re
from pathlib import Path

import prefect.settings
import pytest

from engine.settings import Settings

ENV_DIR = Path(__file__).resolve().parents[2] / "deployments" / "env"
#: Read by a transformer config that names it, not by Settings.
TRANSFORMER_SECRETS = {"GEMINI_API_KEY", "WEBHOOK_SIGNING_SECRET"}
_LINE = re.compile(r"^#?\s*([A-Z][A-Z0-9_]*)=")


def _names(path: Path) -> list[str]:
    """Variable names set (or shown commented out) in an env example."""
    return [m[1] for line in path.read_text().splitlines() if (m := _LINE.match(line))]


EXAMPLES = sorted(ENV_DIR.glob("*.env.example"))


def test_there_is_an_example_per_role() -> None:
    """Each role of the topology has its environment example."""
    assert {p.name.removesuffix(".env.example") for p in EXAMPLES} >= {
        "api",
        "worker",
        "maintenance",
        "prefect-server",
    }


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_variable_is_read_by_the_engine_or_prefect(path: Path) -> None:
    """A variable is an engine setting, a Prefect setting, or a transformer's named secret."""
    engine = {name.upper() for name in Settings.model_fields}
    unknown = [
        name
        for name in _names(path)
        if name not in engine
        and name not in TRANSFORMER_SECRETS
        and not (name.startswith("PREFECT_") and hasattr(prefect.settings, name))
    ]
    assert _names(path), f"{path.name} sets nothing"
    assert unknown == [], f"{path.name} sets variables nothing reads: {unknown}"
