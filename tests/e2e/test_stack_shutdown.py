"""The local stack stops everything it started, the embedded PostgreSQL included, when one of
its services exits and on Ctrl-C, SIGTERM and SIGHUP (what `supaflow up` relies on).

Each case runs a small stack in a process of its own: the embedded PostgreSQL of a fresh data
folder, a service that sleeps and one that exits when told, supervised as `supaflow up` does.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from engine.settings import PROJECT_ROOT

STACK = """
import sys
from pathlib import Path
from cli.services import PYTHON, stop_on_signals
from cli.stack import LocalStack

root = Path(sys.argv[1])
with stop_on_signals(), LocalStack(root, isolated=True) as stack:
    stack.start_database()
    stack.start_service("sleeper", [PYTHON, "-c", "import time; time.sleep(600)"])
    quitter = "import pathlib, time\\nwhile not pathlib.Path(%r).exists(): time.sleep(0.1)"
    stack.start_service("quitter", [PYTHON, "-c", quitter % str(root / "quit")])
    try:  # before "ready": a signal sent the moment it is read must land in here
        print("ready", flush=True)
        print("exited:", stack.supervise(poll=0.2), flush=True)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
"""


def _leftovers(fresh_data_dir: Path) -> str:
    """Processes whose command line names the data folder (postgres, the two services)."""
    found = subprocess.run(
        ["pgrep", "-af", str(fresh_data_dir)], capture_output=True, text=True, check=False
    )
    return found.stdout.strip()


@pytest.mark.slow
@pytest.mark.parametrize("how", ["service exits", "SIGINT", "SIGTERM", "SIGHUP"])
def test_stack_stops_everything_it_started(how: str, fresh_data_dir: Path) -> None:
    """Whatever ends the stack, afterwards nothing it started runs any more."""
    proc = subprocess.Popen(
        [sys.executable, "-c", STACK, str(fresh_data_dir)],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    try:
        assert proc.stdout.readline().strip() == "ready", proc.stdout.read()
        assert "postgres" in _leftovers(fresh_data_dir)
        if how == "service exits":
            (fresh_data_dir / "quit").touch()
        else:
            proc.send_signal(getattr(signal, how))
        output = proc.communicate(timeout=120)[0]
    finally:
        proc.kill()
    assert proc.returncode == 0, output
    assert ("exited: quitter" if how == "service exits" else "interrupted") in output
    assert _leftovers(fresh_data_dir) == "", output
