"""The performance scripts in bench/, each run once at a tiny size: every script brings up what
it measures (scratch databases, Prefect server on PostgreSQL, API, workers), measures the
engine and its baseline, prints a table and writes a JSON report. Checked here: the script
exits 0 and the report has the machine, the settings, engine and baseline numbers and the
targets. The numbers themselves are not asserted (no timed assertions)."""

from __future__ import annotations

import json
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


CASES = [
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
        "step_overhead.py",
        ("--reps", "2", "--steps", "3", "--warmup", "1"),
        frozenset({"per_step_seconds", "run_seconds_median"}),
        frozenset({"raw_submit", "raw_direct"}),
    ),
    BenchCase(
        "api_load.py",
        ("--rate", "20", "--duration", "5"),
        frozenset({"post", "get", "errors_total", "achieved_rate_per_s"}),
        frozenset({"raw_prefect"}),
    ),
    BenchCase(
        "db_scale.py",
        ("--rows", "20000", "--users", "200", "--reps", "3", "--no-plans"),
        frozenset({"get by id", "maintenance: jobs in flight (recovery)"}),
        frozenset({"without_rls", "reference: full scan (count(*) of jobs)"}),
    ),
    BenchCase(
        "load_concurrent.py",
        ("--jobs", "8", "--history-rows", "2000", "--idle-seconds", "1", "--undispatched", "2"),
        frozenset({"creation_and_processing", "maintenance_under_load", "api_responsiveness"}),
        frozenset({"raw_prefect_same_keys", "api_reads_idle", "maintenance_idle"}),
    ),
]


def _run(case: BenchCase, report: Path) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    proc = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "bench" / case.script), *case.args, "--report", report],
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
def test_bench_script_runs_and_reports(case: BenchCase, tmp_path: Path) -> None:
    """A tiny run of the script exits 0 and writes a report with machine info, settings,
    the engine's numbers, each baseline's numbers and every target with met/missed."""
    proc, report = _run(case, tmp_path / "report.json")
    output = (proc.stdout + proc.stderr)[-6000:]
    assert proc.returncode == 0, output
    assert report.keys() >= REPORT_KEYS, output
    assert report["machine"].keys() >= MACHINE_KEYS
    assert case.engine_keys <= report["engine"].keys()
    assert case.baseline_keys <= report["baselines"].keys()
    assert report["targets"], "every script states its targets"
    for target in report["targets"]:
        assert {"target", "value", "limit", "met"} <= target.keys()
    # The table is printed too.
    assert "| " in proc.stdout
