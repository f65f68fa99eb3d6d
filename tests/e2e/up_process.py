"""What the end-to-end tests of `supaflow up` share: free ports, the command's environment,
and the processes a stack may have left behind."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

SUPAFLOW = str(Path(sys.executable).parent / "supaflow")


def free_port() -> int:
    """A TCP port nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def up_environment(data_dir: Path) -> dict[str, str]:
    """This environment without the caller's stack settings, on the data folder `data_dir`."""
    foreign = {"DATABASE_URL", "PREFECT_API_URL", "SUPABASE_URL", "PREFECT_HOME"}
    env = {k: v for k, v in os.environ.items() if k not in foreign}
    env.update({"DATA_DIR": str(data_dir), "PREFECT_CLIENT_MAX_RETRIES": "3"})
    return env


def leftovers(data_dir: Path, *ports: int) -> str:
    """Processes whose command line names the data folder or listens on one of the ports."""
    pattern = "|".join([*(f"--port {p}" for p in ports), str(data_dir)])
    found = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True, check=False)
    return found.stdout.strip()
