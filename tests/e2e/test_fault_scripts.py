"""The fault scripts in bench/, one trial each: every script brings up the stack `supaflow up`
runs (embedded PostgreSQL, Prefect server on it, warm worker, API), breaks one part of it,
lets the stack's supervisor and maintenance heal it, and reports counts; the counts in its
JSON report are checked here.

The scripts with the same recovery settings run in one `python -m bench` process on one stack
(their trials leave it as they found it); fault_postgres_restart, with a slower heartbeat, and
the process-worker option run on stacks of their own, as files."""

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
    """A script, the jobs one trial posts, whether they must have been resubmitted, and the
    script's options."""

    script: str
    jobs_posted: int
    must_resubmit: bool
    options: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        """The module name (bench.<name>)."""
        return self.script.removesuffix(".py")


SHARED = [
    # kill -9 of the warm worker with 10 jobs mid-step: all resubmitted, each completes once.
    FaultCase("fault_kill_flow.py", jobs_posted=10, must_resubmit=True),
    # kill -9 of the API between commit and answer: the retried requests find one job each.
    FaultCase("fault_kill_api.py", jobs_posted=3, must_resubmit=False),
    # kill -9 of maintenance mid-pass: the next passes finish the resubmissions, once each.
    FaultCase("fault_kill_maintenance.py", jobs_posted=10, must_resubmit=True),
    # The Prefect server crashed and restarted by the supervisor: the jobs in flight complete.
    FaultCase("fault_prefect_restart.py", jobs_posted=10, must_resubmit=False),
    # Prefect down: one job in flight and three posted during the outage all complete.
    FaultCase("fault_prefect_down.py", jobs_posted=4, must_resubmit=False),
    # Redis of the rate limiter down: the API answers, limits on its own, says so.
    FaultCase("fault_redis_down.py", jobs_posted=4, must_resubmit=False),
]
ALONE = [
    # PostgreSQL restarted mid-run: no job stuck; with the pool's connection check none fails.
    FaultCase("fault_postgres_restart.py", jobs_posted=3, must_resubmit=False),
    # The process worker, as an option: the killed flow-run process's job is resubmitted.
    FaultCase(
        "fault_kill_flow.py",
        jobs_posted=1,
        must_resubmit=True,
        options=("--worker", "process", "--jobs", "1", "--delay", "3"),
    ),
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
        report = str(folder / f"{case.name}.json")
        argv += ["--", case.name, "--trials", "1", "--report", report, *case.options]
    return _run(["-m", "bench", *argv[1:]])[1], folder


def _check(case: FaultCase, code: int | None, output: str, report_path: Path) -> None:
    report: dict[str, Any] = json.loads(report_path.read_text()) if report_path.exists() else {}
    output = output[-6000:]
    assert code == 0, output
    assert report["all_ok"] is True, output
    (trial,) = report["trials"]
    assert trial["posted"] == case.jobs_posted, output
    assert trial["completed"] == case.jobs_posted, output
    never = ("failed", "stuck", "duplicated", "rerun_finished")
    assert {k: trial[k] for k in never} == dict.fromkeys(never, 0), output
    assert trial["recover_seconds"] is not None, output
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
@pytest.mark.parametrize("case", ALONE, ids=lambda c: "-".join([c.name, *c.options[1:2]]))
def test_fault_script_run_as_a_file(case: FaultCase, tmp_path: Path) -> None:
    """The same for a script run on its own stack, as a file."""
    report = tmp_path / "report.json"
    script = str(PROJECT_ROOT / "bench" / case.script)
    code, output = _run([script, "--trials", "1", "--report", str(report), *case.options])
    _check(case, code, output, report)
