"""`supaflow worker` and `python -m worker`: the same options, the same function called."""

from __future__ import annotations

from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from cli.main import app
from worker import serve

FLAGS = (
    "--pool",
    "--limit",
    "--name",
    "--query-seconds",
    "--heartbeat-seconds",
    "--drain-seconds",
    "--no-listen",
    "--deploy",
    "--deploy-only",
)


def _supaflow_worker_flags() -> set[str]:
    command = typer.main.get_command(app).commands["worker"]  # type: ignore[attr-defined]
    return {flag for param in command.params for flag in param.opts if flag != "--help"}


def _python_m_worker_flags() -> set[str]:
    return {
        flag
        for action in serve.build_parser()._actions
        for flag in action.option_strings
        if flag not in ("-h", "--help")
    }


def test_supaflow_worker_help_lists_every_option() -> None:
    """`supaflow worker --help` shows each option of `python -m worker`."""
    result = CliRunner().invoke(app, ["worker", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    missing = [flag for flag in FLAGS if flag not in result.output]
    assert not missing, result.output


def test_both_commands_take_the_same_flags() -> None:
    """The typer command and the argparse parser accept exactly the same flags."""
    assert _supaflow_worker_flags() == _python_m_worker_flags() == set(FLAGS)


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["--pool", "p1", "--limit", "3", "--name", "w1", "--query-seconds", "0.5"],
        ["--heartbeat-seconds", "5", "--drain-seconds", "2", "--no-listen"],
        ["--deploy"],
        ["--deploy-only", "--pool", "p2"],
    ],
)
def test_both_commands_call_run_command_with_the_same_arguments(
    argv: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given the same flags, `supaflow worker` and `python -m worker` call
    `worker.serve.run_command` with the same arguments (defaults included)."""
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(serve, "run_command", lambda **options: calls.append(options))
    result = CliRunner().invoke(app, ["worker", *argv])
    assert result.exit_code == 0, result.output
    serve.main(argv)
    assert len(calls) == 2
    assert calls[0] == calls[1]
