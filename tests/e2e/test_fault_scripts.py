"""The fault scripts in bench/, one trial each: every script brings up a local stack (embedded
PostgreSQL, Prefect server, process worker, API), breaks one part of it, and reports counts;
the counts in its JSON report are checked here.

The two scripts with the same recovery settings run in one `python -m bench` process on one
stack (their trials leave it as they found it); fault_postgres_restart, with a slower
heartbeat, runs on a stack of its own, as a file."""

from __future__ import annotations

import json
import re
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

    @property
    def name(self) -> str:
        """The module name (bench.<name>)."""
        return self.script.removesuffix(".py")


SHARED = [
    # kill -9 mid-step: the job is resubmitted, completes, and no finished step runs again.
    FaultCase("fault_kill_flow.py", jobs_posted=1, must_resubmit=True),
    # Prefect down: one job in flight and three posted during the outage all complete.
    FaultCase("fault_prefect_down.py", jobs_posted=4, must_resubmit=False),
]
ALONE = [
    # PostgreSQL restarted mid-run: no job stuck; with the pool's connection check none fails.
    FaultCase("fault_postgres_restart.py", jobs_posted=3, must_resubmit=False),
]


def _run(argv: list[str]) -> tuple[int, str]:
    proc = subprocess.run(
        [sys.executable, *argv],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    return proc.returncode, proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def shared_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """One trial of every SHARED script in one `python -m bench` run; (output, report folder)."""
    folder = tmp_path_factory.mktemp("faults")
    argv: list[str] = []
    for case in SHARED:
        argv += ["--", case.name, "--trials", "1", "--report", str(folder / f"{case.name}.json")]
    return _run(["-m", "bench", *argv[1:]])[1], folder


def _check(case: FaultCase, code: int | None, output: str, report_path: Path) -> None:
    report: dict[str, Any] = json.loads(report_path.read_text()) if report_path.exists() else {}
    output = output[-6000:]
    assert code == 0, output
    assert report["all_ok"] is True, output
    (trial,) = report["trials"]
    assert trial["posted"] == case.jobs_posted, output
    assert trial["completed"] == case.jobs_posted, output
    assert (trial["failed"], trial["stuck"], trial["rerun_steps"]) == (0, 0, 0), output
    if case.must_resubmit:
        assert trial["resubmissions"] >= 1, output


@pytest.mark.slow
@pytest.mark.parametrize("case", SHARED, ids=lambda c: c.name)
def test_fault_script_one_trial_holds_its_property(
    case: FaultCase, shared_run: tuple[str, Path]
) -> None:
    """One trial of the fault script exits 0, and its report counts every posted job as
    completed, none failed or stuck, and no finished step run again."""
    output, folder = shared_run
    found = re.search(rf"^bench {case.name}: exit (\d+)$", output, re.M)
    _check(case, int(found[1]) if found else None, output, folder / f"{case.name}.json")


@pytest.mark.slow
@pytest.mark.parametrize("case", ALONE, ids=lambda c: c.name)
def test_fault_script_run_as_a_file(case: FaultCase, tmp_path: Path) -> None:
    """The same for a script run on its own stack, as a file."""
    report = tmp_path / "report.json"
    script = str(PROJECT_ROOT / "bench" / case.script)
    code, output = _run([script, "--trials", "1", "--report", str(report)])
    _check(case, code, output, report)
