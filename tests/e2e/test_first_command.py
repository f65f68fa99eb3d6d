"""The README's first command, walked headless: `supaflow up --no-wait` on a fresh data folder.

It starts the embedded PostgreSQL, applies the bootstrap and migrations, syncs definitions,
starts a local Prefect server and a process worker, deploys, starts the API, mints a local
token, runs the offline demo job through the REST API and stops everything it started.
"""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest
from up_process import SUPAFLOW, free_port, leftovers, up_environment

from engine.settings import PROJECT_ROOT


def run_up(data_dir: Path, api_port: int, prefect_port: int, timeout: float) -> tuple[int, str]:
    """`supaflow up --no-wait` on the data folder, none of the caller's stack settings
    inherited; (exit code, stdout and stderr)."""
    ports = ["--api-port", str(api_port), "--prefect-port", str(prefect_port)]
    proc = subprocess.run(
        [SUPAFLOW, "up", "--no-wait", *ports],
        env=up_environment(data_dir),
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return proc.returncode, proc.stdout + proc.stderr


@pytest.mark.slow
def test_first_command_runs_the_demo_job_to_completion(fresh_data_dir: Path) -> None:
    """From nothing but the installed project, the stack comes up and the demo job completes;
    afterwards none of the processes it started is left running, the embedded PostgreSQL of
    the data folder included."""
    api_port, prefect_port = free_port(), free_port()
    code, output = run_up(fresh_data_dir, api_port, prefect_port, timeout=600)
    assert code == 0, output[-5000:]
    assert '"status": "completed"' in output
    assert f"http://127.0.0.1:{prefect_port}" in output
    assert f"http://127.0.0.1:{api_port}/docs" in output
    # The operator endpoints are closed without a token, so the stack makes one and says how
    # to use it.
    metrics_token = fresh_data_dir / "metrics-token.txt"
    assert metrics_token.read_text().strip()
    assert metrics_token.stat().st_mode & 0o777 == 0o600
    assert f"$(cat {metrics_token})" in output and f"127.0.0.1:{api_port}/metrics" in output
    # `supaflow token` in another shell signs for the issuer this stack's API accepted.
    issuer = (fresh_data_dir / "local-issuer.txt").read_text().strip()
    assert issuer == f"http://127.0.0.1:{api_port}/auth/v1"
    # Prefect ran on the embedded PostgreSQL, not on SQLite.
    assert "Prefect server (PostgreSQL database prefect)" in output
    assert not list(fresh_data_dir.rglob("prefect.db"))
    left = leftovers(fresh_data_dir, api_port, prefect_port)
    assert left == "", "processes left running: " + left


@pytest.mark.slow
def test_first_command_refuses_a_port_another_server_holds(fresh_data_dir: Path) -> None:
    """With the API's port taken by another server, `up` says which port and how to pick
    another, exits 2 and starts nothing (no demo posted to the stranger, no traceback)."""
    with socket.socket() as stranger:
        stranger.bind(("127.0.0.1", 0))
        stranger.listen()
        port = stranger.getsockname()[1]
        code, output = run_up(fresh_data_dir, port, 0, timeout=120)
    assert code == 2, output
    assert f"port {port} (REST API) is already in use" in output and "--api-port" in output
    assert "Traceback" not in output
    assert not (fresh_data_dir / "postgres").exists()


@pytest.mark.slow
def test_first_command_refuses_a_data_folder_of_another_postgresql(fresh_data_dir: Path) -> None:
    """A `.data/postgres` initialised by another PostgreSQL major is named with what to do,
    exit 2, no traceback, and the folder is left as it was."""
    pgdata = fresh_data_dir / "postgres"
    pgdata.mkdir(parents=True)
    (pgdata / "PG_VERSION").write_text("16\n")
    code, output = run_up(fresh_data_dir, free_port(), free_port(), timeout=120)
    assert code == 2, output
    assert f"{pgdata} holds PostgreSQL 16 data" in output and "Move that folder away" in output
    assert "Traceback" not in output
    assert [p.name for p in pgdata.iterdir()] == ["PG_VERSION"]
