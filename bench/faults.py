"""What the fault scripts share: a stack to break, trials, and their table and report.

`fault_bench` brings up `bench.stacks.fault_stack` with a counting endpoint and a three-step
counting workflow (`fetch` calls the endpoint, `wait` sleeps, `notify` calls it again). A
script posts jobs through the API, breaks one part of the stack (stops and starts a part, or
kills a flow-run process), runs maintenance passes on demand, as the schedule would, and
counts what happened in one `TrialResult` per trial. `fault_main` is each script's `main`.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.counting import CountingServer, count_reruns, install_counting_workflow
from bench.report import markdown_table, parse, write_report
from bench.stacks import FAST_RECOVERY_ENV, fault_stack
from cli.services import PYTHON
from cli.stack import LocalStack
from engine.settings import PROJECT_ROOT

COUNTS = ("posted", "completed", "failed", "stuck", "rerun_steps", "resubmissions")
_MAINTENANCE = """
import json, sys
from flows.maintenance import maintenance
result = maintenance(grace_seconds=None if sys.argv[2] == "default" else float(sys.argv[2]))
with open(sys.argv[1], "w") as out:
    json.dump(result, out, default=str)
"""


@dataclass
class TrialResult:
    """Counts of one fault trial; `ok` says whether the property held."""

    trial: int
    posted: int = 0
    completed: int = 0
    failed: int = 0
    stuck: int = 0
    rerun_steps: int = 0
    resubmissions: int = 0
    seconds: float = 0.0
    ok: bool = False
    notes: list[str] = field(default_factory=list)
    #: Counts particular to one fault (printed under the table, kept in the JSON).
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class FaultBench:
    """A running fault stack, its counting endpoint, the workflow and the local user's token.

    Jobs are read through the engine's store (its pool replaces connections a PostgreSQL
    restart broke)."""

    stack: LocalStack
    counter: CountingServer
    workflow: str
    token: str

    def post_job(self, input_data: Any, *, timeout: float = 30) -> str:
        """POST /workflows/start as the local user; the job id (raises on non-2xx)."""
        answer = httpx.post(
            f"{self.stack.api_url}/workflows/start",
            headers={"Authorization": f"Bearer {self.token}"},
            json={"workflow_id": self.workflow, "input_data": input_data},
            timeout=timeout,
        )
        answer.raise_for_status()
        return str(answer.json()["job_id"])

    def job(self, job_id: str) -> dict[str, Any]:
        """The job's row."""
        from engine.db.connection import shared_store

        return dict(shared_store().get_job(job_id))

    def events(self, job_id: str) -> list[dict[str, Any]]:
        """The job's events in order."""
        from engine.db.connection import shared_store

        return [dict(e) for e in shared_store().events(job_id)]

    def wait_event(self, job_id: str, kind: str, step_id: str, timeout: float = 90) -> None:
        """Wait until the job has an event `kind` for `step_id`; RuntimeError on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(e["kind"] == kind and e["step_id"] == step_id for e in self.events(job_id)):
                return
            time.sleep(0.1)
        raise RuntimeError(f"job {job_id}: no {kind} event for step {step_id} in {timeout:.0f} s")

    def run_maintenance(self, grace_seconds: float | None = None) -> dict[str, Any]:
        """One maintenance pass (the real flow, in a new process, as the schedule runs it);
        its result, or `{"error": ...}` when the pass failed (e.g. Prefect is down)."""
        fd, name = tempfile.mkstemp(suffix=".json", dir=self.stack.root / "tmp")
        os.close(fd)
        out, grace = Path(name), "default" if grace_seconds is None else str(grace_seconds)
        with (self.stack.log_dir / "maintenance.log").open("ab") as log:
            done = subprocess.run(
                [PYTHON, "-c", _MAINTENANCE, str(out), grace],
                env=self.stack.env,
                cwd=PROJECT_ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                check=False,
                timeout=180,
            )
        try:
            if done.returncode != 0 or not out.stat().st_size:
                return {"error": f"maintenance exited with {done.returncode}; see maintenance.log"}
            return dict(json.loads(out.read_text()))
        finally:
            out.unlink(missing_ok=True)

    def wait_settled(self, job_ids: Sequence[str], timeout: float) -> dict[str, str]:
        """Wait until every job is completed or failed, or `timeout` passes, with a
        maintenance pass every second meanwhile; the last statuses."""
        from engine.db.connection import shared_store

        deadline = last_pass = time.monotonic()
        deadline += timeout
        while True:
            statuses = shared_store().statuses(job_ids)
            settled = all(s in ("completed", "failed") for s in statuses.values())
            if settled or time.monotonic() >= deadline:
                return statuses
            if time.monotonic() - last_pass >= 1.0:
                self.run_maintenance()
                last_pass = time.monotonic()
            time.sleep(0.25)

    def kill_flow_run(self, flow_run_id: str, timeout: float = 30) -> int:
        """SIGKILL the process running `flow_run_id` (waits for it to appear); its pid."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid = self.stack.flow_run_process(flow_run_id)
            if pid is not None:
                os.kill(pid, signal.SIGKILL)
                return pid
            time.sleep(0.1)
        raise RuntimeError(f"no process runs flow run {flow_run_id}")

    def tally(self, result: TrialResult, job_ids: Sequence[str]) -> None:
        """Count the jobs' final statuses, re-run steps and resubmissions; note why each job
        was resubmitted and why any did not complete."""
        for job_id in job_ids:
            row = self.job(job_id)
            result.posted += 1
            result.completed += row["status"] == "completed"
            result.failed += row["status"] == "failed"
            result.rerun_steps += count_reruns(self.events(job_id), self.counter.hits(job_id))
            result.resubmissions += int(row["resubmissions"])
            result.notes.extend(
                f"job {job_id[:8]}: resubmitted because {entry.get('reason')}"
                for entry in row.get("state_history") or []
                if entry.get("decision") == "resubmit"
            )
            if row["status"] != "completed":
                result.notes.append(f"job {job_id[:8]} {row['status']}: {row['error_message']}")
        result.stuck = result.posted - result.completed - result.failed


@contextmanager
def fault_bench(
    name: str, env: Mapping[str, str], *, keep: bool, workflow: str, delay: float
) -> Iterator[FaultBench]:
    """A fault stack with the counting workflow (its `wait` step `delay` seconds long; steps
    retry twice, 0.5 s apart) and a local user's token."""
    with CountingServer() as counter, fault_stack(name, env, keep=keep) as stack:
        retry = {"max_retries": 2, "strategy": "fixed", "initial_delay_seconds": 0.5}
        install_counting_workflow(workflow, counter.url, delay_seconds=delay, retry=retry)
        yield FaultBench(stack, counter, workflow, stack.mint_token("bench@example.com"))


def format_table(results: Sequence[TrialResult]) -> str:
    """A Markdown table of the trials, with a total row."""
    headers = ["trial", "posted", "completed", "failed", "stuck", "re-run steps"]
    headers += ["resubmitted", "seconds", "ok"]
    rows = [
        [r.trial, *(getattr(r, k) for k in COUNTS), f"{r.seconds:.1f}", "yes" if r.ok else "NO"]
        for r in results
    ]
    total = [sum(getattr(r, k) for r in results) for k in COUNTS]
    seconds = f"{sum(r.seconds for r in results):.1f}"
    rows.append(["all", *total, seconds, f"{sum(r.ok for r in results)}/{len(results)}"])
    return markdown_table(headers, rows, align="---:")


def run_trials(trials: int, trial: Callable[[int], TrialResult], title: str) -> list[TrialResult]:
    """Run `trial(1..trials)` and print the table; a trial that raises counts as violated,
    its error in its notes, and the next one runs."""
    results: list[TrialResult] = []
    for number in range(1, trials + 1):
        started = time.monotonic()
        try:
            result = trial(number)
        except Exception as exc:
            result = TrialResult(trial=number, notes=[f"error: {type(exc).__name__}: {exc}"])
        result.seconds = round(time.monotonic() - started, 1)
        results.append(result)
        print(
            f"trial {number}: posted={result.posted} completed={result.completed} "
            f"failed={result.failed} stuck={result.stuck} re-run={result.rerun_steps} "
            f"{result.seconds:.1f} s {'ok' if result.ok else 'VIOLATED'}",
            flush=True,
        )
    print(f"\n{title}\n\n{format_table(results)}")
    for r in results:
        if r.extra:
            print(f"  trial {r.trial}: " + ", ".join(f"{k}={v}" for k, v in r.extra.items()))
        for note in r.notes:
            print(f"  trial {r.trial}: {note}")
    return results


@dataclass(frozen=True)
class FaultScript:
    """A fault script: its report name, title, workflow, options (beyond --trials and
    --timeout), which of them the report records (option -> key), and its trial."""

    name: str
    title: str
    workflow: str
    options: tuple[tuple[str, Any, str], ...]
    recorded: Mapping[str, str]
    trial: Callable[[FaultBench, int, argparse.Namespace], TrialResult]
    env: Callable[[argparse.Namespace], dict[str, str]] = lambda _args: dict(FAST_RECOVERY_ENV)


def fault_main(script: FaultScript, doc: str | None, argv: list[str] | None) -> int:
    """Parse the options, run the trials on a fault stack, print the table, write the JSON
    report (trials, totals, settings); exit status 0 if the property held in every trial."""
    common = (
        ("--trials", 3, "how many trials (default 3)"),
        ("--timeout", 120.0, "seconds a trial waits for its jobs"),
    )
    args = parse(doc, argv, *common, *script.options)
    env = script.env(args)
    with fault_bench(
        script.name, env, keep=args.keep, workflow=script.workflow, delay=args.delay
    ) as bench:
        results = run_trials(args.trials, lambda n: script.trial(bench, n, args), script.title)
    recorded = {key: getattr(args, option) for option, key in script.recorded.items()}
    totals = {k: sum(getattr(r, k) for r in results) for k in COUNTS}
    ok = bool(results) and all(r.ok for r in results)
    data = {"trials": [asdict(r) for r in results], "totals": totals, "all_ok": ok}
    write_report(script.name, {**data, **recorded, "settings": env}, args.report)
    return 0 if ok else 1
