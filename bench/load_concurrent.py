"""SPEC.md's load tests, counted, on one stack (Prefect server on PostgreSQL, API, warm worker).

1. Creation and processing: `--jobs` jobs from `--clients` concurrent clients over `--users`
   users, each with an Idempotency-Key, `--replay-share` of the keys posted twice at once; the
   first and last steps call a counting endpoint. Baseline: the same keys through raw Prefect.
2. Maintenance under load: `--history-rows` finished jobs before the burst, `--undispatched`
   jobs inserted without a flow run during it, the maintenance flow every
   `--maintenance-every` seconds (baseline: idle passes); no healthy job may be resubmitted.
3. API responsiveness: GET /jobs/{id} and GET /jobs?limit=20 at `--sample-rate` per second,
   idle (baseline) and during the burst.

Exit status 0 when nothing was lost, nothing was duplicated and no request failed.
"""

from __future__ import annotations

import argparse
import random
import secrets
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

if not __package__:  # run as a file: import `bench` from the project root
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from bench import report as out
from bench.fault_workload import CountingServer, Reruns, count_reruns, install_counting_workflow
from bench.stacks import Benchmark, engine_running, post_jobs, raw_deployment
from cli.stack import LocalStack

WORKFLOW = "bench_counting"
Start = tuple[int, str]  # (index, idempotency key) of one POST
KINDS = ("get", "list")


class Repeating:
    """`step()` in a thread every `every` seconds until stopped: on a fixed schedule with
    `fixed_rate`, else `every` after each call ends; `results` holds what it returned."""

    def __init__(self, step: Callable[[], Any], every: float, fixed_rate: bool = False):
        self.step, self.every, self.fixed_rate = step, every, fixed_rate
        self.results: list[Any] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            self.results.append(self.step())
            next_at = (next_at if self.fixed_rate else time.monotonic()) + self.every
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def stop(self) -> list[Any]:
        """Stop after the current call; the results."""
        self._stop.set()
        self._thread.join(300)
        return self.results


class Reads(Repeating):
    """GET /jobs/{id} and GET /jobs?limit=20 in turn, `rate` per second, as one user."""

    def __init__(self, stack: LocalStack, token: str, job_ids: list[str], rate: float) -> None:
        headers = {"Authorization": f"Bearer {token}"}
        self.client = httpx.Client(base_url=stack.api_url, headers=headers, timeout=10)
        self.job_ids, self.rng = job_ids, random.Random(3)
        super().__init__(self.read, 1 / rate, fixed_rate=True)

    def read(self) -> tuple[str, float | str]:
        """One read: (kind, milliseconds) or (kind, what went wrong)."""
        kind = "get" if len(self.results) % 2 == 0 else "list"
        path = f"/jobs/{self.rng.choice(self.job_ids)}" if kind == "get" else "/jobs?limit=20"
        started = time.perf_counter()
        try:
            status = self.client.get(path).status_code
        except httpx.HTTPError as exc:
            return kind, type(exc).__name__
        return kind, (time.perf_counter() - started) * 1000 if status == 200 else str(status)

    def summary(self) -> dict[str, Any]:
        """Stop; percentiles of each kind and the errors."""
        results = self.stop()
        self.client.close()
        ms = {k: [v for kind, v in results if kind == k and isinstance(v, float)] for k in KINDS}
        errors = Counter(f"{kind} {v}" for kind, v in results if isinstance(v, str))
        summary = {
            "get_job_ms": out.summarize(ms["get"]),
            "list_jobs_ms": out.summarize(ms["list"]),
        }
        return summary | {"errors": sum(errors.values()), "error_kinds": dict(errors)}


def maintenance_pass() -> dict[str, Any]:
    """One pass of the real maintenance flow, in this process; its duration and decisions."""
    from flows.maintenance import maintenance

    started = time.perf_counter()
    try:
        result, error = maintenance(grace_seconds=2.0), None
    except Exception as exc:
        result, error = {}, f"{type(exc).__name__}: {exc}"
    recovery = result.get("recovery", {})
    return {
        "seconds": round(time.perf_counter() - started, 3),
        "dispatched": list(result.get("dispatched", [])),
        "resubmitted": dict(recovery.get("resubmitted", {})),
        "failed": dict(recovery.get("failed", {})),
        "recovery_errors": dict(recovery.get("errors", {})),
        "error": error,
    }


def raw_baseline(stack: LocalStack, starts: list[Start], args: argparse.Namespace) -> Any:
    """The same keys through raw Prefect on a warm worker: flow runs created and finished."""
    prefix, started = f"raw-{secrets.token_hex(3)}-", time.monotonic()
    with raw_deployment(stack, "supaflow-warm", 10) as deployment:
        ids = out.raw_burst(
            deployment,
            len(starts),
            args.clients,
            lambda n: {"x": {"i": starts[n][0]}, "steps": 3},
            lambda n: prefix + starts[n][1],
        )
        distinct = sorted({i for i in ids if i is not None})
        out.wait_final(stack, distinct, timeout=args.timeout, runs=True, every=0.5)
    completed = out.outcomes(stack, distinct, runs=True)["counts"].get("COMPLETED", 0)
    (row,) = out.query(stack.prefect_database_url, "flow_runs_of_deployment", [deployment])
    return {
        "requests": len(ids),
        "request_errors": ids.count(None),
        "distinct_flow_runs": len(distinct),
        "flow_run_rows": row.get("n"),
        "distinct_keys": row.get("keys"),
        "completed": completed,
        "not_completed": len(distinct) - completed,
        "seconds": round(time.monotonic() - started, 1),
    }


def burst(stack: LocalStack, args: argparse.Namespace, users: list[tuple[str, str]]) -> Any:
    """History rows; idle baselines (reads, maintenance passes); then the burst, with reads
    and maintenance alongside and jobs inserted without a flow run, until all have drained."""
    from engine.db.connection import shared_store

    (tokens, user_ids), store = zip(*users, strict=True), shared_store()
    keys = [f"load-{i}-{secrets.token_hex(4)}" for i in range(args.jobs)]
    replays = set(random.Random(11).sample(keys, int(len(keys) * args.replay_share)))
    starts = [(i, k) for i, k in enumerate(keys) for _ in range(2 if k in replays else 1)]
    seeded = time.perf_counter()
    with out.connect(stack.database_url) as conn:
        conn.execute(out.sql("seed_history"), {"users": list(user_ids), "rows": args.history_rows})
        conn.execute("analyze public.jobs")
        sample = [r["id"] for r in conn.execute(out.sql("jobs_of_user"), [user_ids[0]]).fetchall()]
    print(f"seeded {args.history_rows} finished jobs in {time.perf_counter() - seeded:.1f} s")
    reads = Reads(stack, tokens[0], sample, args.sample_rate)
    time.sleep(args.idle_seconds)
    idle = {"reads": reads.summary(), "passes": [maintenance_pass() for _ in range(3)]}

    passes = Repeating(maintenance_pass, args.maintenance_every)
    reads, started = Reads(stack, tokens[0], sample, args.sample_rate), time.monotonic()
    requests = [(tokens[i % len(tokens)], k, WORKFLOW, {"i": i}) for i, k in starts]
    answers = post_jobs(stack, requests, args.clients)
    post_seconds = time.monotonic() - started
    undispatched = [
        store.create_job(user_id=u, workflow_id=WORKFLOW, input_data={"i": -i}).id
        for i, u in ((i, user_ids[i % len(user_ids)]) for i in range(args.undispatched))
    ]
    job_ids = sorted({a["job_id"] for a in answers if a.get("job_id")})
    out.wait_final(stack, job_ids + undispatched, timeout=args.timeout - post_seconds, every=0.5)
    drained = time.monotonic() - started
    return {
        "starts": starts,
        "replays": len(replays),
        "answers": answers,
        "job_ids": job_ids,
        "undispatched": undispatched,
        "statuses": store.statuses(job_ids + undispatched),
        "idle": idle,
        "reads": reads.summary(),
        "passes": passes.stop(),
        "post_seconds": post_seconds,
        "drain_seconds": drained,
    }


def count_creation(stack: LocalStack, b: Any, counter: CountingServer, users: list[str]) -> Any:
    """Section 1: jobs created, replays answered, statuses, flow runs per job, re-run steps."""

    ids, answers = b["job_ids"] + b["undispatched"], b["answers"]
    (rows,) = out.query(stack.database_url, "jobs_of_users", [users, WORKFLOW])
    runs = out.query(stack.prefect_database_url, "flow_runs_per_job", [ids])
    runs_per_job = {r["job"]: r["n"] for r in runs}
    by_key: dict[str, set[str]] = {}
    for a in answers:
        by_key.setdefault(a["key"], set()).update([a["job_id"]] if a.get("job_id") else [])
    statuses = Counter(b["statuses"].values())
    calls = Counter(n for j in ids for n in counter.hits(j).values())
    return {
        "requests": len(answers),
        "keys": len({k for _, k in b["starts"]}),
        "replayed_keys": b["replays"],
        "answers_by_status": dict(Counter(str(a["status"]) for a in answers)),
        "distinct_jobs_from_api": len(b["job_ids"]),
        "keys_answered_with_two_jobs": sum(1 for v in by_key.values() if len(v) > 1),
        "job_rows_for_bench_users": rows.get("n"),
        "undispatched_inserted": len(b["undispatched"]),
        "completed": statuses["completed"],
        "failed": statuses["failed"],
        "stuck": len(ids) - statuses["completed"] - statuses["failed"],
        "jobs_with_more_than_one_flow_run": sum(1 for n in runs_per_job.values() if n > 1),
        "jobs_without_flow_run": sum(1 for j in ids if j not in runs_per_job),
        "counted_calls_per_step": {str(k): v for k, v in sorted(calls.items())},
        "rerun_steps": _finished_reruns(ids, counter),
        "post_seconds": round(b["post_seconds"], 1),
        "drain_seconds": round(b["drain_seconds"], 1),
        "jobs_per_second": round(len(ids) / b["drain_seconds"], 2) if b["drain_seconds"] else None,
    }


def _finished_reruns(job_ids: list[str], counter: CountingServer) -> int:
    """Finished steps that ran again (nothing is interrupted here: none may)."""
    from engine.db.connection import shared_store

    reruns = [count_reruns(shared_store().events(j), counter.hits(j)) for j in job_ids]
    total = sum(reruns, Reruns())
    return total.finished + total.interrupted


def count_maintenance(b: Any) -> dict[str, Any]:
    """Section 2: pass durations (idle, under load), what the passes dispatched, resubmitted."""
    passes, dispatched = b["passes"], Counter(j for p in b["passes"] for j in p["dispatched"])
    undispatched = b["undispatched"]
    return {
        "passes_under_load": len(passes),
        "pass_seconds_under_load": out.summarize([p["seconds"] for p in passes]),
        "pass_seconds_idle": out.summarize([p["seconds"] for p in b["idle"]["passes"]]),
        "pass_errors": sum(1 for p in passes if p["error"]),
        "undispatched_dispatched_by_maintenance": sum(1 for j in undispatched if dispatched[j]),
        "api_jobs_dispatched_by_maintenance_too": sum(1 for j in b["job_ids"] if dispatched[j]),
        "dispatched_twice": sum(1 for n in dispatched.values() if n > 1),
        "undispatched_completed": sum(b["statuses"].get(j) == "completed" for j in undispatched),
        "resubmitted": sum(len(p["resubmitted"]) for p in passes),
        "failed_by_recovery": sum(len(p["failed"]) for p in passes),
        "recovery_errors": sum(len(p["recovery_errors"]) for p in passes),
    }


def run(stack: LocalStack, args: argparse.Namespace) -> dict[str, Any]:
    """The three sections on the stack, then the raw baseline; the engine's report and the
    baselines (the raw run, the idle reads and maintenance passes)."""
    from cli.local_auth import ensure_local_user

    args.timeout = args.timeout or 180 + args.jobs * 1.5
    with CountingServer() as counter, engine_running(stack, limit=args.limit):
        install_counting_workflow(WORKFLOW, counter.url)
        emails = [f"load-{u}@example.com" for u in range(args.users)]
        users = [(stack.mint_token(e), ensure_local_user(e)) for e in emails]
        with out.stderr_to(stack.log_dir / "in-process-flows.log"):
            b = burst(stack, args, users)
        engine = {
            "creation_and_processing": count_creation(stack, b, counter, [u for _, u in users]),
            "maintenance_under_load": count_maintenance(b),
            "api_responsiveness": {"idle": b["idle"]["reads"], "under_load": b["reads"]},
        }
    raw = None if args.no_baseline else raw_baseline(stack, b["starts"], args)
    return {
        "engine": engine,
        "raw_prefect_same_keys": raw,
        "api_reads_idle": engine["api_responsiveness"]["idle"],
        "maintenance_idle": engine["maintenance_under_load"]["pass_seconds_idle"],
    }


OPTIONS = [
    ("--jobs", 300, "jobs started through the API", "jobs"),
    ("--clients", 30, "requests in flight", "clients"),
    ("--users", 5, "users the jobs are spread over", "users"),
    ("--replay-share", 0.2, "share of the keys posted twice at once", "replay_share"),
    ("--undispatched", 20, "jobs inserted without a flow run", "undispatched"),
    ("--history-rows", 100_000, "finished jobs in the table before the burst", "history_rows"),
    ("--maintenance-every", 3.0, "seconds between maintenance passes", "maintenance_every_s"),
    ("--sample-rate", 10.0, "reads per second", "sample_rate_per_s"),
    ("--idle-seconds", 10.0, "idle sampling time"),
    out.WARM_LIMIT,
    ("--timeout", None, "seconds to drain at most"),
    ("--no-baseline", False, "skip the raw Prefect run"),
]


def show(args: argparse.Namespace, results: dict[str, Any]) -> Any:
    """The three sections' tables (and the raw baseline's); the targets: nothing lost, nothing
    duplicated, no healthy job resubmitted, no request failed."""
    engine, baseline = results["engine"], results["raw_prefect_same_keys"]
    made, upkeep = engine["creation_and_processing"], engine["maintenance_under_load"]
    reads = engine["api_responsiveness"]
    out.print_table("1. Concurrent creation and processing", ["count", "engine"], made.items())
    if baseline is not None:
        title = "   baseline: the same keys through raw Prefect (run_deployment + idempotency_key)"
        out.print_table(title, ["count", "raw Prefect"], baseline.items())
    rows = [
        (k, f"p50 {v.get('p50')} s, max {v.get('max')} s" if isinstance(v, dict) else v)
        for k, v in upkeep.items()
    ]
    out.print_table("2. Maintenance under load", ["count", "value"], rows)
    headers = ["phase", "GET /jobs/{id} p50", "p99", "GET /jobs p50", "p99", "errors"]
    rows = [
        (
            phase,
            *out.cells(r["get_job_ms"], "p50", "p99"),
            *out.cells(r["list_jobs_ms"], "p50", "p99"),
            r["errors"],
        )
        for phase, r in reads.items()
    ]
    out.print_table("3. API responsiveness (ms)", headers, rows)
    duplicates = made["keys_answered_with_two_jobs"] + made["jobs_with_more_than_one_flow_run"]
    duplicates += made["rerun_steps"] + upkeep["dispatched_twice"]
    failed = sum(n for s, n in made["answers_by_status"].items() if s not in ("200", "201"))
    failed += reads["under_load"]["errors"]
    completed, orphans = made["completed"], upkeep["undispatched_completed"]
    targets = [
        out.check(
            "jobs completed (nothing lost)", completed, ">=", args.jobs + args.undispatched, "jobs"
        ),
        out.check("duplicates (jobs, flow runs, re-run steps)", duplicates, "<=", 0, ""),
        out.check("healthy jobs resubmitted", upkeep["resubmitted"], "<=", 0, "jobs"),
        out.check("undispatched jobs completed", orphans, ">=", args.undispatched, "jobs"),
        out.check("request errors", failed, "<=", 0, ""),
    ]
    flow = "fetch (counted HTTP call) -> reshape (no-op) -> notify (counted)"
    return targets, {"settings": {"workflow": flow}}, all(t["met"] for t in targets)


main = Benchmark("load_concurrent", __doc__, OPTIONS, run, show)

if __name__ == "__main__":
    sys.exit(main())
