"""A bench script stopped by SIGTERM stops every process of the stack it started: the API,
the Prefect server, the warm worker and the embedded PostgreSQL (which runs detached, so it
is found by its data folder under the script's scratch folder)."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import psutil  # type: ignore[import-untyped,unused-ignore]
import pytest

from bench.report import BENCH_DATA
from engine.settings import PROJECT_ROOT
from tests.waiting import wait_until


def _processes_under(folder: str) -> list[psutil.Process]:
    """Live processes whose command line names `folder` (their data or log folder)."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if folder in cmdline and proc.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(proc)
    return found


def _cmdline(proc: psutil.Process) -> str:
    """The command line of `proc`, "" once it has exited (or is a zombie)."""
    try:
        return " ".join(proc.cmdline())
    except psutil.Error:
        return ""


def _new_scratch(before: set[Path]) -> Path | None:
    fresh = [p for p in BENCH_DATA.glob("soak-*") if p not in before]
    return fresh[0] if fresh else None


@pytest.mark.slow
def test_sigterm_stops_the_whole_stack_of_a_bench_script() -> None:
    """SIGTERM to a soak whose stack is up: the script exits, and no process of its stack
    (children or the detached PostgreSQL) is left running."""
    BENCH_DATA.mkdir(parents=True, exist_ok=True)
    before = set(BENCH_DATA.glob("soak-*"))
    args = ["--jobs", "1000", "--rate", "1", "--kill-every", "1000"]
    proc = subprocess.Popen(
        [sys.executable, str(PROJECT_ROOT / "bench" / "soak.py"), *args],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        children: list[psutil.Process] = []

        def stack_is_up() -> bool:
            nonlocal children
            children = psutil.Process(proc.pid).children(recursive=True)
            names = " ".join(_cmdline(c) for c in children)
            scratch = _new_scratch(before)
            return scratch is not None and "worker" in names and "api" in names

        wait_until(stack_is_up, timeout=180, what="the soak's stack did not come up")
        scratch = _new_scratch(before)
        assert scratch is not None
        assert _processes_under(str(scratch)), "the embedded PostgreSQL was not found running"
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
        wait_until(
            lambda: (
                not any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE for c in children)
                and not _processes_under(str(scratch))
            ),
            timeout=60,
            what="processes of the stopped script's stack are still running",
        )
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=120)
