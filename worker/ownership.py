"""Who owns a flow run: the warm worker process named by its `infrastructure_pid`.

A warm worker stamps every run it executes with `warm:<host>:<pid>:<start ticks>`; the start
time (from /proc, Linux) tells a live owner from a new process that reused its pid. These are
pure helpers plus reads of /proc; worker/reaping.py uses them to find orphaned runs.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Owner:
    """The warm worker process named by a flow run's `infrastructure_pid`."""

    host: str
    pid: int
    start: str


def infrastructure_id(host: str, pid: int, start: str) -> str:
    """The `infrastructure_pid` a warm worker stamps on the runs it executes."""
    return f"warm:{host}:{pid}:{start}"


def parse_infrastructure_id(value: str | None) -> Owner | None:
    """The owner named by `value`, or None when it is not a warm worker's id."""
    if not value:
        return None
    parts = value.split(":")
    if len(parts) != 4 or parts[0] != "warm" or not parts[1] or not parts[2].isdigit():
        return None
    return Owner(host=parts[1], pid=int(parts[2]), start=parts[3])


def owner_is_gone(value: str | None, *, host: str, alive: Callable[[int, str], bool]) -> bool:
    """True when `value` names a warm worker process on `host` that no longer exists.

    Runs owned elsewhere (another host, another worker type) are never judged here: only the
    heartbeat can tell whether those are alive.
    """
    owner = parse_infrastructure_id(value)
    if owner is None or owner.host != host:
        return False
    return not alive(owner.pid, owner.start)


def _proc_stat(pid: int) -> list[str]:
    """Fields 3.. of /proc/<pid>/stat (Linux), [] when unreadable."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return []
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    return stat.rsplit(")", 1)[-1].split()


def process_start_token(pid: int) -> str:
    """When process `pid` started (clock ticks since boot, Linux); '' when unknown.

    With the pid it names one process, even after the pid is reused by another.
    """
    fields = _proc_stat(pid)
    return fields[19] if len(fields) > 19 else ""


def process_alive(pid: int, start: str) -> bool:
    """Whether process `pid` runs and is the one that started at `start` (when known).

    A zombie (exited, not yet reaped by its parent) counts as gone.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    fields = _proc_stat(pid)
    if fields and fields[0] in ("Z", "X"):
        return False
    return not (start and len(fields) > 19 and fields[19] != start)


def this_host() -> str:
    """This host's name as an `infrastructure_pid` carries it (':' separates the fields)."""
    return socket.gethostname().replace(":", "-")


def this_process_id(host: str) -> str:
    """The `infrastructure_pid` of this process, as a warm worker on `host` stamps it."""
    pid = os.getpid()
    return infrastructure_id(host, pid, process_start_token(pid))
