"""What the fault scripts share: `FaultScript`, each script's main, runs trials on the stack
`supaflow up` runs (warm worker by default, `--worker process` for Prefect's process worker)
with the counting workflow (bench/fault_workload.py: `fetch` calls a counting endpoint, `wait`
sleeps, `notify` calls it again). A trial posts jobs through the API and breaks one part of the
stack; then, as production would, a supervisor restarts what died (cli/supervision.py) and
maintenance passes run every second (as its schedule would). The trial counts what happened:
jobs completed, failed, stuck and duplicated, finished and interrupted steps that ran again,
resubmissions, and the seconds from the fault until every job was terminal."""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field
from typing import Any

from bench.fault_workload import CountingServer, count_reruns, install_counting_workflow
from bench.report import Option, parse, print_table, query, write_report
from bench.stacks import LIMITS, bench_root
from cli import scratch
from cli.restart_policy import RestartPolicy
from cli.stack import LocalStack
from cli.supervision import Supervisor
from cli.up import start_job
from engine.db.connection import shared_store

COUNTS = (
    "posted",
    "completed",
    "failed",
    "stuck",
    "duplicated",
    "rerun_finished",
    "rerun_interrupted",
    "resubmissions",
)
#: Crash detection and recovery in seconds, not minutes. The heartbeat window stays above the
#: time a flow-run process takes to start on a loaded 2-core machine: a run a worker took
#: does not beat until its process is up, and a shorter window resubmits healthy runs.
FAST_RECOVERY_ENV = {
    "JOB_HEARTBEAT_SECONDS": "0.5",
    "HEARTBEAT_WINDOW_SECONDS": "10",
    "RESUBMIT_BACKOFF_SECONDS": "0",
    "DISPATCH_GRACE_SECONDS": "1",
    "HTTP_ALLOWLIST": "127.0.0.1",
    "PREFECT_WORKER_QUERY_SECONDS": "1",
    "PREFECT_WORKER_PREFETCH_SECONDS": "1",
    "RATE_LIMITS": LIMITS.format(6000, 60000),
}
#: `supaflow up`'s restart policy, but a trial's restarts never add up to giving up: each
#: trial gets a new supervisor.
TRIAL_RESTARTS = RestartPolicy()


@dataclass
class TrialResult:
    """Counts of one fault trial (`COUNTS`); `ok` says whether the property held.
    `recover_seconds`: from the fault until every job was terminal (None: not all were)."""

    trial: int
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTS, 0))
    seconds: float = 0.0
    recover_seconds: float | None = None
    ok: bool = False
    notes: list[str] = field(default_factory=list)
    #: Counts particular to one fault (printed under the table, kept in the JSON).
    extra: dict[str, Any] = field(default_factory=dict)

    def report(self) -> dict[str, Any]:
        """The trial as the JSON report holds it, its counts beside the trial number."""
        data = asdict(self)
        return {"trial": data.pop("trial"), **data.pop("counts"), **data}

    def held(self) -> bool:
        """The property every fault keeps: every job completed, none twice, and no finished
        step ran again."""
        c = self.counts
        return c["completed"] == c["posted"] and c["duplicated"] == c["rerun_finished"] == 0


class MaintenanceLoop:
    """Maintenance passes in new processes, one started at most every `every` seconds, in a
    thread, as the deployment's schedule runs them (scratch.run_maintenance)."""

    def __init__(self, stack: LocalStack, every: float = 1.0) -> None:
        self.stack, self.every, self.passes = stack, every, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> MaintenanceLoop:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=120)

    def _loop(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            scratch.run_maintenance(self.stack)
            self.passes += 1
            self._stop.wait(max(0.0, self.every - (time.monotonic() - started)))


@dataclass
class FaultBench:
    """A running fault stack, its counting endpoint, the workflow and the local user's token.
    Jobs are read through the engine's store (it replaces connections a restart broke)."""

    stack: LocalStack
    counter: CountingServer
    workflow: str
    token: str
    worker: str = "warm"
    supervisor: Supervisor = field(init=False)
    #: Monotonic time of the trial's fault (`fault()`), from which recovery is measured.
    fault_at: float | None = None

    def __post_init__(self) -> None:
        self.begin_trial()

    def begin_trial(self) -> None:
        """A new supervisor, so restarts of earlier trials do not add up to giving up."""
        self.supervisor = self.stack.supervisor(TRIAL_RESTARTS)
        self.fault_at = None

    def fault(self) -> float:
        """Mark now as the moment of the fault; the monotonic time."""
        self.fault_at = time.monotonic()
        return self.fault_at

    def heal(self) -> None:
        """One look of the supervisor: restart what died once its delay is over."""
        if (gave_up := self.supervisor.check(time.monotonic())) is not None:
            raise RuntimeError(f"the supervisor gave up on {gave_up}")

    def ready(self, timeout: float = 180) -> None:
        """Heal until every service of the stack runs and the API answers."""
        deadline = time.monotonic() + timeout
        while not all(s.alive() for s in self.stack.services.values()):
            if time.monotonic() > deadline:
                raise RuntimeError("the stack did not come back up")
            self.heal()
            time.sleep(0.2)
        self.stack.wait_api(timeout=max(1.0, deadline - time.monotonic()))

    def post_job(self, input_data: Any, *, timeout: float = 30) -> str:
        """POST /workflows/start as the local user; the job id (raises on non-2xx)."""
        return start_job(self.stack.api_url, self.token, self.workflow, input_data, timeout)

    def post_mid_step(self, jobs: int, trial: int, step: str = "wait") -> list[str]:
        """Post `jobs` jobs and wait until every one has started `step`; their ids."""
        job_ids = [self.post_job({"trial": trial}) for _ in range(jobs)]
        for job_id in job_ids:
            self.wait_event(job_id, "step_started", step)
        return job_ids

    def job(self, job_id: str) -> dict[str, Any]:
        """The job's row."""
        return dict(shared_store().get_job(job_id))

    def job_events(self, job_id: str) -> list[dict[str, Any]]:
        """The job's events, oldest first."""
        return [dict(e) for e in shared_store().events(job_id)]

    def wait_event(self, job_id: str, kind: str, step_id: str, timeout: float = 90) -> None:
        """Wait until the job has an event `kind` for `step_id`; RuntimeError on timeout."""
        deadline, store = time.monotonic() + timeout, shared_store()
        while time.monotonic() < deadline:
            if any(e["kind"] == kind and e["step_id"] == step_id for e in store.events(job_id)):
                return
            time.sleep(0.1)
        raise RuntimeError(f"job {job_id}: no {kind} event for step {step_id} in {timeout:.0f} s")

    def settle(self, result: TrialResult, job_ids: Sequence[str], timeout: float) -> None:
        """Heal and run maintenance until every job is completed or failed (or `timeout`);
        then count (`count`)."""
        deadline, store = time.monotonic() + timeout, shared_store()
        with MaintenanceLoop(self.stack):
            while time.monotonic() < deadline:
                self.heal()
                if all(s in ("completed", "failed") for s in store.statuses(job_ids).values()):
                    if self.fault_at is not None:
                        result.recover_seconds = round(time.monotonic() - self.fault_at, 1)
                    break
                time.sleep(0.25)
        self.count(result, job_ids)

    def count(self, result: TrialResult, job_ids: Sequence[str]) -> None:
        """Count the jobs' statuses, re-run steps, resubmissions and duplicates (jobs whose
        flow runs completed more than once), and note why each was resubmitted and why any
        did not complete."""
        counts, store = result.counts, shared_store()
        runs = query(self.stack.prefect_database_url, "flow_runs_per_job", [list(job_ids)])
        completed_runs = {r["job"]: int(r["completed"]) for r in runs}
        for job_id in job_ids:
            row = self.job(job_id)
            counts["posted"] += 1
            counts["completed"] += row["status"] == "completed"
            counts["failed"] += row["status"] == "failed"
            counts["duplicated"] += completed_runs.get(job_id, 0) > 1
            reruns = count_reruns(store.events(job_id), self.counter.hits(job_id))
            counts["rerun_finished"] += reruns.finished
            counts["rerun_interrupted"] += reruns.interrupted
            counts["resubmissions"] += int(row["resubmissions"])
            result.notes += [
                f"job {job_id[:8]}: resubmitted because {entry.get('reason')}"
                for entry in row.get("state_history") or []
                if entry.get("decision") == "resubmit"
            ]
            if row["status"] != "completed":
                result.notes.append(f"job {job_id[:8]} {row['status']}: {row['error_message']}")
        counts["stuck"] = counts["posted"] - counts["completed"] - counts["failed"]


def run_trials(
    trials: int, trial: Callable[[int], TrialResult], title: str, bench: FaultBench
) -> list[TrialResult]:
    """Run `trial(1..trials)`, each on a stack back up, and print the table; a trial that
    raises counts as violated, its error in its notes, and the next one runs."""
    results: list[TrialResult] = []
    for number in range(1, trials + 1):
        started = time.monotonic()
        try:
            bench.ready()
            bench.begin_trial()
            r = trial(number)
        except Exception as exc:
            r = TrialResult(trial=number, notes=[f"error: {type(exc).__name__}: {exc}"])
        r.seconds = round(time.monotonic() - started, 1)
        results.append(r)
        counts = " ".join(f"{k}={r.counts[k]}" for k in COUNTS[:5])
        reruns = f"re-run finished={r.counts['rerun_finished']} "
        reruns += f"interrupted={r.counts['rerun_interrupted']}"
        verdict = "ok" if r.ok else "VIOLATED"
        print(f"trial {number}: {counts} {reruns} {r.seconds:.1f} s {verdict}", flush=True)
    _print_results(title, results)
    return results


def _print_results(title: str, results: Sequence[TrialResult]) -> None:
    headers = ["trial", "posted", "completed", "failed", "stuck", "duplicated"]
    headers += ["re-run finished", "re-run interrupted", "resubmitted", "recover s", "ok"]
    rows: list[list[Any]] = [
        [r.trial, *r.counts.values(), _seconds(r.recover_seconds), r.ok] for r in results
    ]
    ok, recovered = sum(r.ok for r in results), [r.recover_seconds for r in results]
    worst = max((s for s in recovered if s is not None), default=None)
    rows.append(["all", *totals(results).values(), f"max {_seconds(worst)}", f"{ok}/{len(rows)}"])
    print_table(title, headers, rows, align="---:")
    for r in results:
        lines = ([", ".join(f"{k}={v}" for k, v in r.extra.items())] if r.extra else []) + r.notes
        print("".join(f"  trial {r.trial}: {line}\n" for line in lines), end="")


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def totals(results: Sequence[TrialResult]) -> dict[str, int]:
    """Every count summed over the trials."""
    return {k: sum(r.counts[k] for r in results) for k in COUNTS}


def recovery(results: Sequence[TrialResult]) -> dict[str, float | None]:
    """The median and the largest time to recover over the trials that recovered."""
    seconds = sorted(r.recover_seconds for r in results if r.recover_seconds is not None)
    if not seconds:
        return {"recover_seconds_median": None, "recover_seconds_max": None}
    median, worst = seconds[len(seconds) // 2], seconds[-1]
    return {"recover_seconds_median": median, "recover_seconds_max": worst}


@dataclass(frozen=True)
class FaultScript:
    """A fault script's main, `main(argv)`: --trials, --timeout, --worker and its `options`
    parsed, `trial(bench, number, args)` run --trials times on one fault stack with the
    settings `env(args)`, the table under `title`, the report `.data/bench/<name>.json`; 0 if
    the property always held.

    The stack is `scratch.embedded_stack` (what `supaflow up` runs; maintenance is not
    scheduled: the trials run its passes), with the counting workflow `bench_<name>` (`wait`
    --delay seconds long; steps retry twice, 0.5 s apart)."""

    name: str
    title: str
    doc: str | None
    trial: Callable[[FaultBench, int, argparse.Namespace], TrialResult]
    options: Sequence[Option]
    env: Callable[[argparse.Namespace], dict[str, str]] = lambda _args: dict(FAST_RECOVERY_ENV)
    #: A part of the stack the fault adds around all its trials (e.g. a Redis to kill).
    setup: Callable[[FaultBench, argparse.Namespace], AbstractContextManager[Any]] = (
        lambda _bench, _args: nullcontext()
    )

    def __call__(self, argv: list[str] | None = None) -> int:
        """Run the trials with these arguments (None: the command line's); exit status."""
        trials = ("--trials", 20, "how many trials (default 20)")
        timeout = ("--timeout", 120.0, "seconds a trial waits")
        worker = ("--worker", "warm", "warm (the default path) or process", "worker")
        args = parse(self.doc, argv, trials, timeout, worker, *self.options)
        workflow, root, env = f"bench_{self.name}", bench_root(self.name), self.env(args)
        retry = {"max_retries": 2, "strategy": "fixed", "initial_delay_seconds": 0.5}
        stack_of = scratch.embedded_stack(root, env, worker=args.worker, keep=args.keep)
        with CountingServer() as counter, stack_of as stack:
            install_counting_workflow(workflow, counter.url, delay=args.delay, retry=retry)
            token = stack.mint_token("bench@example.com")
            bench = FaultBench(stack, counter, workflow, token, worker=args.worker)
            run = lambda n: self.trial(bench, n, args)  # noqa: E731
            with self.setup(bench, args):
                results = run_trials(args.trials, run, self.title, bench)
        ok = bool(results) and all(r.ok for r in results)
        data: dict[str, Any] = {"trials": [r.report() for r in results]}
        data["totals"] = totals(results)
        data |= {**recovery(results), "all_ok": ok}
        write_report(self.name, {**data, **args.settings, "settings": env}, args.report)
        return 0 if ok else 1
