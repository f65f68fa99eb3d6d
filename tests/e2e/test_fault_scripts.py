"""The fault scripts in bench/, one trial each: every script brings up its own local stack
(embedded PostgreSQL, Prefect server, process worker, API), breaks one part of it, and reports
counts; the counts in its JSON report are checked here."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from engine.settings import PROJECT_ROOT


@dataclass(frozen=True)
class FaultCase:
    """A script, the jobs one trial posts, and whether finished steps may run again."""

    script: str
    jobs_posted: int
    must_resubmit: bool


CASES = [
    # kill -9 mid-step: the job is resubmitted, completes, and no finished step runs again.
    FaultCase("fault_kill_flow.py", jobs_posted=1, must_resubmit=True),
    # Prefect down: one job in flight and three posted during the outage all complete.
    FaultCase("fault_prefect_down.py", jobs_posted=4, must_resubmit=False),
    # PostgreSQL restarted mid-run: no job stuck; with the pool's connection check none fails.
    FaultCase("fault_postgres_restart.py", jobs_posted=3, must_resubmit=False),
]


def _run(script: str, report: Path) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    proc = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "bench" / script), "--trials", "1", "--report", report],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    data = json.loads(report.read_text()) if report.exists() else {}
    return proc, data


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.script.removesuffix(".py"))
def test_fault_script_one_trial_holds_its_property(case: FaultCase, tmp_path: Path) -> None:
    """One trial of the fault script exits 0, and its report counts every posted job as
    completed, none failed or stuck, and no finished step run again."""
    proc, report = _run(case.script, tmp_path / "report.json")
    output = (proc.stdout + proc.stderr)[-6000:]
    assert proc.returncode == 0, output
    assert report["all_ok"] is True, output
    (trial,) = report["trials"]
    assert trial["posted"] == case.jobs_posted, output
    assert trial["completed"] == case.jobs_posted, output
    assert (trial["failed"], trial["stuck"], trial["rerun_steps"]) == (0, 0, 0), output
    if case.must_resubmit:
        assert trial["resubmissions"] >= 1, output
