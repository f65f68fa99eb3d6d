"""The performance scripts in bench/, each run once at a tiny size: every script measures the
engine and its baseline on a stack of scratch databases and a Prefect server on PostgreSQL,
prints a table and writes a JSON report. Checked here: the script exits 0 and the report has
the machine, the settings, engine and baseline numbers and the targets. The numbers
themselves are not asserted (no timed assertions).

The scripts on a stack run in one `python -m bench` process, sharing one stack (one start-up
instead of five); db_scale, which needs no stack, runs as a file."""

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

MACHINE_KEYS = {"nproc", "cpu_model", "python", "prefect", "date"}
REPORT_KEYS = {"name", "machine", "settings", "engine", "baselines", "targets", "all_met"}


@dataclass(frozen=True)
class BenchCase:
    """A script, its tiny-size arguments, and keys its engine and baseline parts must have."""

    script: str
    args: tuple[str, ...]
    engine_keys: frozenset[str]
    baseline_keys: frozenset[str]

    @property
    def name(self) -> str:
        """The module name (bench.<name>)."""
        return self.script.removesuffix(".py")


# In this order on the shared stack: api_load leaves flow runs no worker takes, so it is last.
SHARED = [
    BenchCase(
        "step_overhead.py",
        ("--reps", "2", "--steps", "3", "--warmup", "1"),
        frozenset({"per_step_seconds", "run_seconds_median"}),
        frozenset({"raw_submit", "raw_direct"}),
    ),
    BenchCase(
        "latency.py",
        ("--n", "2", "--warmup", "1"),
        frozenset({"latency_seconds", "start_call_seconds", "not_finished"}),
        frozenset({"raw_process", "raw_warm"}),
    ),
    BenchCase(
        "throughput.py",
        ("--n", "10", "--process-n", "2"),
        frozenset({"jobs_per_second", "finished", "failed", "cpu_seconds_per_job"}),
        frozenset({"raw_warm", "raw_process"}),
    ),
    BenchCase(
        "load_concurrent.py",
        ("--jobs", "8", "--history-rows", "2000", "--idle-seconds", "1", "--undispatched", "2"),
        frozenset({"creation_and_processing", "maintenance_under_load", "api_responsiveness"}),
        frozenset({"raw_prefect_same_keys", "api_reads_idle", "maintenance_idle"}),
    ),
    BenchCase(
        "large_input.py",
        ("--n", "1", "--warmup", "0", "--keys", "2000"),
        frozenset({"engine_small", "engine_large"}),
        frozenset({"raw_small", "raw_large"}),
    ),
    BenchCase(
        "api_load.py",
        ("--rate", "20", "--duration", "5"),
        frozenset({"post", "get", "errors_total", "achieved_rate_per_s"}),
        frozenset({"raw_prefect"}),
    ),
]
ALONE = [
    BenchCase(
        "db_scale.py",
        ("--rows", "20000", "--users", "200", "--reps", "3", "--no-plans"),
        frozenset({"get by id", "maintenance: jobs in flight (recovery)"}),
        frozenset({"without_rls", "reference: full scan (count(*) of jobs)"}),
    ),
]


@dataclass(frozen=True)
class Outcome:
    """What a run left: exit status, output, report."""

    code: int | None
    output: str
    report: dict[str, Any]


def _report(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {}


@pytest.fixture(scope="module")
def shared_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Outcome]:
    """Every SHARED script in one `python -m bench` run; per script its outcome."""
    folder = tmp_path_factory.mktemp("bench")
    argv: list[str] = []
    for case in SHARED:
        argv += ["--", case.name, *case.args, "--report", str(folder / f"{case.name}.json")]
    proc = subprocess.run(
        [sys.executable, "-m", "bench", *argv[1:]],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    output = proc.stdout + proc.stderr
    codes = {m[1]: int(m[2]) for m in re.finditer(r"^bench (\w+): exit (\d+)$", output, re.M)}
    return {
        c.name: Outcome(codes.get(c.name), output, _report(folder / f"{c.name}.json"))
        for c in SHARED
    }


def _check(case: BenchCase, outcome: Outcome) -> None:
    output = outcome.output[-6000:]
    report = outcome.report
    assert outcome.code == 0, output
    assert report.keys() >= REPORT_KEYS, output
    assert report["machine"].keys() >= MACHINE_KEYS
    assert case.engine_keys <= report["engine"].keys()
    assert case.baseline_keys <= report["baselines"].keys()
    assert report["targets"], "every script states its targets"
    for target in report["targets"]:
        assert {"target", "value", "limit", "met"} <= target.keys()
    # The table is printed too.
    assert "| " in outcome.output


@pytest.mark.slow
@pytest.mark.parametrize("case", SHARED, ids=lambda c: c.name)
def test_bench_script_runs_and_reports(case: BenchCase, shared_run: dict[str, Outcome]) -> None:
    """A tiny run of the script exits 0 and writes a report with machine info, settings,
    the engine's numbers, each baseline's numbers and every target with met/missed."""
    _check(case, shared_run[case.name])


@pytest.mark.slow
@pytest.mark.parametrize("case", ALONE, ids=lambda c: c.name)
def test_bench_script_run_as_a_file(case: BenchCase, tmp_path: Path) -> None:
    """The same for a script run on its own, as a file (`.venv/bin/python bench/<script>`)."""
    report = tmp_path / "report.json"
    proc = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "bench" / case.script), *case.args, "--report", report],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    _check(case, Outcome(proc.returncode, proc.stdout + proc.stderr, _report(report)))
