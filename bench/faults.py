"""What the fault scripts share: `FaultScript`, each script's main, runs trials on a stack to
break with the counting workflow (`fetch` calls a counting endpoint, `wait` sleeps, `notify`
calls it again). A trial posts jobs through the API, breaks one part of the stack, waits while
maintenance passes run every second (as the schedule would) and counts what happened."""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.metadata import version
from typing import Any

from bench.report import BENCH_DATA, Option, parse, print_table, write_report
from bench.stacks import LIMITS, NOOP, bench_root
from cli import scratch
from cli.stack import LocalStack
from cli.up import start_job
from engine.db.connection import shared_store

COUNTS = ("posted", "completed", "failed", "stuck", "rerun_steps", "resubmissions")
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
#: A migrated Prefect SQLite database: fault stacks start from a copy (migrating takes ~10 s).
PREFECT_SQLITE = BENCH_DATA / "cache" / f"prefect-{version('prefect')}.db"


class CountingServer(ThreadingHTTPServer):
    """A local HTTP server counting calls to `/count/<job>/<step>`; answers `{"n": count}`.
    A step that runs twice shows here as a count of 2: the side effect, not the engine's word."""

    daemon_threads = True

    def __init__(self) -> None:
        self.calls: Counter[tuple[str, str]] = Counter()
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Counted)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def hits(self, job_id: str) -> dict[str, int]:
        """Calls per step for one job."""
        with self.lock:
            return {step: n for (job, step), n in self.calls.items() if job == job_id}

    def __exit__(self, *_exc: object) -> None:
        self.shutdown()
        self.server_close()


class _Counted(BaseHTTPRequestHandler):
    server: CountingServer

    def do_GET(self) -> None:
        parts = self.path.strip("/").split("/")
        if len(parts) != 3 or parts[0] != "count":
            self.send_error(404)
            return
        with self.server.lock:
            self.server.calls[(parts[1], parts[2])] += 1
            body = json.dumps({"n": self.server.calls[(parts[1], parts[2])]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return


def install_counting_workflow(
    workflow_id: str,
    counter_url: str,
    *,
    delay: float | None = None,
    retry: Mapping[str, Any] | None = None,
) -> None:
    """Insert (or replace) a workflow `fetch` -> middle -> `notify`: fetch and notify are
    http_request steps calling the counting server; the middle step is `wait`, a delay of
    `delay` seconds, or without one `reshape`, a no-op. `retry` is the workflow's policy."""
    store, count = shared_store(), f"{workflow_id}-count"
    config = {"url_template": counter_url + "/count/{job}/{step}", "request_timeout_seconds": 10}
    store.upsert_transformer(
        count, "http_request", "bench: counting endpoint", config, "execute-http-request"
    )
    job = {"job.$": "$.job.id"}
    middle = {"id": "reshape", "transformer": NOOP, "input": {"n.$": "$.steps.fetch.body.n"}}
    if delay is not None:
        config = {"seconds": delay}
        store.upsert_transformer(
            f"{workflow_id}-wait", "delay", "bench: the long step", config, "execute-delay"
        )
        middle = {"id": "wait", "transformer": f"{workflow_id}-wait", "input": job}
    steps = [
        {"id": "fetch", "transformer": count, "input": {**job, "step": "fetch"}},
        middle,
        {"id": "notify", "transformer": count, "input": {**job, "step": "notify"}},
    ]
    output = {"fetched.$": "$.steps.fetch.body.n", "notified.$": "$.steps.notify.body.n"}
    definition = {"steps": steps, "output": output, **({"retry": dict(retry)} if retry else {})}
    store.upsert_workflow(workflow_id, "bench: counting workflow", definition)


def count_reruns(events: Iterable[Mapping[str, Any]], hits: Mapping[str, int]) -> int:
    """How many times a finished step ran again.

    Per step, the larger of: `step_started` events after the step's first `step_succeeded`
    event (the engine's record), and calls to the counting endpoint beyond the first (the
    side effect). A step cut off before its output was saved and then run again is not a
    re-run by the events; it is one by the endpoint if it had already made its call.
    """
    succeeded: set[str] = set()
    by_events: Counter[str] = Counter()
    for event in events:
        step = event.get("step_id")
        if step is not None and event["kind"] == "step_succeeded":
            succeeded.add(step)
        elif event["kind"] == "step_started" and step in succeeded:
            by_events[step] += 1
    return sum(max(by_events[s], hits.get(s, 0) - 1, 0) for s in set(by_events) | set(hits))


@dataclass
class TrialResult:
    """Counts of one fault trial (`COUNTS`); `ok` says whether the property held."""

    trial: int
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTS, 0))
    seconds: float = 0.0
    ok: bool = False
    notes: list[str] = field(default_factory=list)
    #: Counts particular to one fault (printed under the table, kept in the JSON).
    extra: dict[str, Any] = field(default_factory=dict)

    def report(self) -> dict[str, Any]:
        """The trial as the JSON report holds it, its counts beside the trial number."""
        data = asdict(self)
        return {"trial": data.pop("trial"), **data.pop("counts"), **data}


@dataclass
class FaultBench:
    """A running fault stack, its counting endpoint, the workflow and the local user's token.
    Jobs are read through the engine's store (it replaces connections a restart broke)."""

    stack: LocalStack
    counter: CountingServer
    workflow: str
    token: str

    def post_job(self, input_data: Any, *, timeout: float = 30) -> str:
        """POST /workflows/start as the local user; the job id (raises on non-2xx)."""
        return start_job(self.stack.api_url, self.token, self.workflow, input_data, timeout)

    def job(self, job_id: str) -> dict[str, Any]:
        """The job's row."""
        return dict(shared_store().get_job(job_id))

    def wait_event(self, job_id: str, kind: str, step_id: str, timeout: float = 90) -> None:
        """Wait until the job has an event `kind` for `step_id`; RuntimeError on timeout."""
        deadline, store = time.monotonic() + timeout, shared_store()
        while time.monotonic() < deadline:
            if any(e["kind"] == kind and e["step_id"] == step_id for e in store.events(job_id)):
                return
            time.sleep(0.1)
        raise RuntimeError(f"job {job_id}: no {kind} event for step {step_id} in {timeout:.0f} s")

    def settle(self, result: TrialResult, job_ids: Sequence[str], timeout: float) -> None:
        """Until every job is completed or failed (or `timeout`), a maintenance pass a second,
        as the schedule would run them; then count their statuses, re-run steps and
        resubmissions, and note why each was resubmitted and why any did not complete."""
        deadline, last_pass, store = time.monotonic() + timeout, time.monotonic(), shared_store()
        while time.monotonic() < deadline:
            if all(s in ("completed", "failed") for s in store.statuses(job_ids).values()):
                break
            if time.monotonic() - last_pass >= 1.0:
                scratch.run_maintenance(self.stack)
                last_pass = time.monotonic()
            time.sleep(0.25)
        counts = result.counts
        for job_id in job_ids:
            row = self.job(job_id)
            counts["posted"] += 1
            counts["completed"] += row["status"] == "completed"
            counts["failed"] += row["status"] == "failed"
            counts["rerun_steps"] += count_reruns(store.events(job_id), self.counter.hits(job_id))
            counts["resubmissions"] += int(row["resubmissions"])
            result.notes += [
                f"job {job_id[:8]}: resubmitted because {entry.get('reason')}"
                for entry in row.get("state_history") or []
                if entry.get("decision") == "resubmit"
            ]
            if row["status"] != "completed":
                result.notes.append(f"job {job_id[:8]} {row['status']}: {row['error_message']}")
        counts["stuck"] = counts["posted"] - counts["completed"] - counts["failed"]


def run_trials(trials: int, trial: Callable[[int], TrialResult], title: str) -> list[TrialResult]:
    """Run `trial(1..trials)` and print the table; a trial that raises counts as violated,
    its error in its notes, and the next one runs."""
    results: list[TrialResult] = []
    for number in range(1, trials + 1):
        started = time.monotonic()
        try:
            r = trial(number)
        except Exception as exc:
            r = TrialResult(trial=number, notes=[f"error: {type(exc).__name__}: {exc}"])
        r.seconds = round(time.monotonic() - started, 1)
        results.append(r)
        counts = " ".join(f"{k}={r.counts[k]}" for k in COUNTS[:4])
        rerun, verdict = r.counts["rerun_steps"], "ok" if r.ok else "VIOLATED"
        print(f"trial {number}: {counts} re-run={rerun} {r.seconds:.1f} s {verdict}", flush=True)
    headers = ["trial", "posted", "completed", "failed", "stuck", "re-run steps", "resubmitted"]
    rows = [[r.trial, *r.counts.values(), f"{r.seconds:.1f}", r.ok] for r in results]
    seconds, ok = f"{sum(r.seconds for r in results):.1f}", sum(r.ok for r in results)
    rows.append(["all", *totals(results).values(), seconds, f"{ok}/{len(results)}"])
    print_table(title, [*headers, "seconds", "ok"], rows, align="---:")
    for r in results:
        lines = ([", ".join(f"{k}={v}" for k, v in r.extra.items())] if r.extra else []) + r.notes
        print("".join(f"  trial {r.trial}: {line}\n" for line in lines), end="")
    return results


def totals(results: Sequence[TrialResult]) -> dict[str, int]:
    """Every count summed over the trials."""
    return {k: sum(r.counts[k] for r in results) for k in COUNTS}


@dataclass(frozen=True)
class FaultScript:
    """A fault script's main, `main(argv)`: --trials, --timeout and its `options` parsed,
    `trial(bench, number, args)` run --trials times on one fault stack with the settings
    `env(args)`, the table under `title`, the report `.data/bench/<name>.json`; 0 if the
    property always held.

    The stack: embedded PostgreSQL, Prefect on SQLite, run-workflow on the process pool, a
    process worker and the API (cli/scratch.py; maintenance is not deployed: trials run it),
    with the counting workflow `bench_<name>` (`wait` --delay seconds long; steps retry twice,
    0.5 s apart)."""

    name: str
    title: str
    doc: str | None
    trial: Callable[[FaultBench, int, argparse.Namespace], TrialResult]
    options: Sequence[Option]
    env: Callable[[argparse.Namespace], dict[str, str]] = lambda _args: dict(FAST_RECOVERY_ENV)

    def __call__(self, argv: list[str] | None = None) -> int:
        """Run the trials with these arguments (None: the command line's); exit status."""
        trials = ("--trials", 3, "how many trials (default 3)")
        timeout = ("--timeout", 120.0, "seconds a trial waits")
        args = parse(self.doc, argv, trials, timeout, *self.options)
        workflow, root, env = f"bench_{self.name}", bench_root(self.name), self.env(args)
        retry = {"max_retries": 2, "strategy": "fixed", "initial_delay_seconds": 0.5}
        with (
            CountingServer() as counter,
            scratch.embedded_stack(root, env, PREFECT_SQLITE, keep=args.keep) as stack,
        ):
            install_counting_workflow(workflow, counter.url, delay=args.delay, retry=retry)
            bench = FaultBench(stack, counter, workflow, stack.mint_token("bench@example.com"))
            results = run_trials(args.trials, lambda n: self.trial(bench, n, args), self.title)
        ok = bool(results) and all(r.ok for r in results)
        data = {"trials": [r.report() for r in results], "totals": totals(results), "all_ok": ok}
        write_report(self.name, {**data, **args.settings, "settings": env}, args.report)
        return 0 if ok else 1
