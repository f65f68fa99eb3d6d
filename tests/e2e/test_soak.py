"""The soak (bench/soak.py) in small: 40 mixed jobs posted at 4 per second on the stack
`supaflow up` runs, the warm worker killed -9 every 8 s while they are posted, then the jobs
settle under maintenance and the supervisor; the counts of its JSON report are checked here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from engine.settings import PROJECT_ROOT

TINY = ["--jobs", "40", "--rate", "4", "--kill-every", "8", "--long", "2"]
#: The kills stop at the last post: a kill every 8 s while the jobs settle would kill the
#: runs each maintenance pass (every 30 s) resubmits, and the run would take minutes.
TINY += ["--kill-until", "posted"]


@pytest.mark.slow
def test_tiny_soak_loses_duplicates_and_strands_nothing(tmp_path: Path) -> None:
    """A tiny soak exits 0 with all_ok: the warm worker was killed at least once, no job is
    lost, duplicated, stuck or inconsistent, no finished step ran again, and exactly the
    jobs of the failing share (4 of 40) failed."""
    report_path = tmp_path / "soak.json"
    script = str(PROJECT_ROOT / "bench" / "soak.py")
    proc = subprocess.run(
        [sys.executable, script, *TINY, "--report", str(report_path)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    output = (proc.stdout + proc.stderr)[-6000:]
    assert proc.returncode == 0, output
    report = json.loads(report_path.read_text())
    counts = report["counts"]
    assert report["all_ok"] is True, output
    assert counts["posted"] == 40, output
    assert counts["kills"] >= 1, output
    never = ("lost", "duplicated", "stuck", "inconsistent", "rerun_finished")
    assert {k: counts[k] for k in never} == dict.fromkeys(never, 0), output
    assert counts["failed"] == counts["expected_failures"] == 4, output
    assert counts["completed"] == 36, output
    assert report["memory"]["warm_worker"]["lives"] >= 2, output
