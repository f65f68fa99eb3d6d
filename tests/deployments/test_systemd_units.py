"""The systemd units in deployments/systemd start each role with the command the deployment
guide names, read the role's environment file, and restart it as `supaflow up` does."""

from __future__ import annotations

import configparser
from pathlib import Path

import pytest

from cli.restart_policy import RestartPolicy

ROOT = Path(__file__).resolve().parents[2]
UNITS = sorted((ROOT / "deployments" / "systemd").glob("supaflow-*.service"))
GUIDE = (ROOT / "deployments" / "README.md").read_text()


def _unit(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(path.read_text())
    return parser


def _role(path: Path) -> str:
    return path.name.removeprefix("supaflow-").removesuffix(".service")


def test_there_is_a_unit_per_role() -> None:
    """Every role that has an environment example has a unit."""
    examples = {p.name.removesuffix(".env.example") for p in (ROOT / "deployments/env").glob("*")}
    assert {_role(p) for p in UNITS} == examples


@pytest.mark.parametrize("path", UNITS, ids=_role)
def test_unit_runs_the_role_command_with_its_environment(path: Path) -> None:
    """ExecStart is the guide's command for the role (from the checkout's .venv), and the
    environment comes from the role's file."""
    service = _unit(path)["Service"]
    command = service["ExecStart"].removeprefix("/opt/supaflow/.venv/bin/")
    assert f"`{command.split(' --host')[0]}" in GUIDE or f"`{command}`" in GUIDE, command
    assert service["EnvironmentFile"] == f"/etc/supaflow/{_role(path)}.env"


@pytest.mark.parametrize("path", UNITS, ids=_role)
def test_unit_restarts_like_the_local_stack(path: Path) -> None:
    """Restart=always with the local stack's policy: the first delay, the cap, and giving up
    after as many restarts within the same window."""
    unit = _unit(path)
    policy = RestartPolicy()
    assert unit["Service"]["Restart"] == "always"
    assert float(unit["Service"]["RestartSec"]) == policy.delay(0)
    assert float(unit["Service"]["RestartMaxDelaySec"]) == policy.cap_seconds
    assert int(unit["Unit"]["StartLimitBurst"]) == policy.max_restarts
    assert float(unit["Unit"]["StartLimitIntervalSec"]) == policy.window_seconds
