"""SPEC.md's load tests, counted: concurrent creation and processing, maintenance under load,
API responsiveness.

    .venv/bin/python bench/load_concurrent.py                       # 300 jobs, 30 clients
    .venv/bin/python bench/load_concurrent.py --jobs 20 --history-rows 2000   # the CI size

One run, three sections on the same stack (Prefect server on PostgreSQL, API, warm worker):

1. Creation and processing. `--jobs` jobs are started by `--clients` concurrent clients over
   `--users` users, each with an Idempotency-Key; `--replay-share` of the keys are posted a
   second time at the same moment (a client retrying). Every job runs a workflow whose first
   and last steps call a local counting endpoint, so a step that ran twice shows as a second
   call. Counted: distinct jobs created, replays answered with the same job, job rows, final
   statuses, flow runs per job (Prefect's database), calls per job and step. Baseline: the
   same keys through raw Prefect (`run_deployment(idempotency_key=...)`, warm worker):
   distinct flow runs and their final states.
2. Maintenance under load. Before the burst the jobs table gets `--history-rows` finished
   jobs; during it, `--undispatched` jobs are inserted without a flow run (as if the API had
   died after its insert) and the real maintenance flow runs every `--maintenance-every`
   seconds. Counted: pass durations, jobs it dispatched (each once, each completed), and
   jobs it resubmitted (must be none: they are all healthy). Baseline: passes on the idle
   system before the burst.
3. API responsiveness. GET /jobs/{id} and GET /jobs?limit=20 at `--sample-rate` per second,
   on the idle system (baseline) and during the burst until it has drained; p50/p99 and errors.

Exit status 0 when nothing was lost, nothing was duplicated and no request failed.
"""

from __future__ import annotations

import argparse
import random
import secrets
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if not __package__:  # run as a file: import `bench` from the project root
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from bench.counting import CountingServer, count_reruns, install_counting_workflow
from bench.load_probes import MaintenanceLoop, Sampler, calls, post_all, raw_baseline
from bench.measure import wait_final
from bench.report import (
    check,
    finish,
    machine_info,
    parse,
    print_table,
    stderr_to,
    summarize,
)
from bench.stacks import connect, deployment_id, perf_stack, start_engine
from cli.stack import WARM_DEPLOYMENT, LocalStack

WORKFLOW = "bench_counting"


@dataclass
class Burst:
    """What one burst left to count."""

    answers: list[dict[str, Any]]
    job_ids: list[str]
    undispatched: list[str]
    statuses: dict[str, str]
    passes: list[dict[str, Any]]
    reads: dict[str, Any]
    post_seconds: float
    drain_seconds: float
    idle: dict[str, Any] = field(default_factory=dict)

    @property
    def all_ids(self) -> list[str]:
        """Jobs from the API and jobs inserted without a flow run."""
        return self.job_ids + self.undispatched


def seed_history(stack: LocalStack, user_ids: list[str], rows: int) -> float:
    """`rows` finished jobs spread over the users (generated in SQL); seconds it took."""
    started = time.perf_counter()
    with connect(stack.database_url) as conn:
        conn.execute(
            "insert into public.jobs (user_id, workflow_id, status, input_data, step_data,"
            " final_result, created_at, started_at, completed_at, state_history)"
            " select (%(users)s::uuid[])[1 + n %% cardinality(%(users)s::uuid[])],"
            " 'bench_noop_3', case when n %% 50 = 0 then 'failed' else 'completed' end,"
            " '{}'::jsonb, '{}'::jsonb, '{}'::jsonb,"
            " now() - make_interval(secs => n + 3600), now() - make_interval(secs => n + 3600),"
            " now() - make_interval(secs => n + 3599), '[]'::jsonb"
            " from generate_series(1, %(rows)s) as n",
            {"users": user_ids, "rows": rows},
        )
        conn.execute("analyze public.jobs")
    return time.perf_counter() - started


def burst(
    stack: LocalStack, args: argparse.Namespace, users: list[tuple[str, str]], starts: list[Any]
) -> Burst:
    """Idle baselines (reads, maintenance passes), then the burst with reads and maintenance
    alongside, and jobs inserted without a flow run, until everything has drained."""
    from engine.db.connection import shared_store

    tokens, user_ids = [t for t, _ in users], [u for _, u in users]
    with connect(stack.database_url) as conn:
        rows = conn.execute(
            "select id::text as id from public.jobs where user_id = %s limit 50", [user_ids[0]]
        ).fetchall()
    sample_ids = [r["id"] for r in rows]
    sampler = Sampler(stack.api_url, tokens[0], sample_ids, args.sample_rate).start()
    time.sleep(args.idle_seconds)
    idle = {
        "reads": sampler.stop(),
        "passes": [MaintenanceLoop(0, 2.0).run_once() for _ in range(3)],
    }

    maintenance = MaintenanceLoop(args.maintenance_every, 2.0).start()
    sampler = Sampler(stack.api_url, tokens[0], sample_ids, args.sample_rate).start()
    started = time.monotonic()
    answers = post_all(stack.api_url, WORKFLOW, tokens, starts, args.clients)
    post_seconds = time.monotonic() - started
    store = shared_store()
    undispatched = [
        store.create_job(
            user_id=user_ids[i % len(user_ids)], workflow_id=WORKFLOW, input_data={"i": -i}
        ).id
        for i in range(args.undispatched)
    ]
    job_ids = sorted({a["job_id"] for a in answers if a.get("job_id")})
    timeout = args.timeout or 180 + args.jobs * 1.5
    wait_final(stack, job_ids + undispatched, timeout=timeout - post_seconds, poll=0.5)
    drain_seconds = time.monotonic() - started
    reads, passes = sampler.stop(), maintenance.stop()
    with connect(stack.database_url) as conn:
        found = conn.execute(
            "select id::text as id, status from public.jobs where id = any(%s::uuid[])",
            [job_ids + undispatched],
        ).fetchall()
    statuses = {r["id"]: r["status"] for r in found}
    result = Burst(
        answers, job_ids, undispatched, statuses, passes, reads, post_seconds, drain_seconds
    )
    result.idle = idle
    return result


def count_creation(
    stack: LocalStack, b: Burst, counter: CountingServer, user_ids: list[str], replays: int
) -> dict[str, Any]:
    """Section 1: jobs created, replays answered, statuses, flow runs per job, re-run steps."""
    with connect(stack.database_url) as conn:
        rows_for_users = conn.execute(
            "select count(*) as n from public.jobs where user_id = any(%s::uuid[])"
            " and workflow_id = %s",
            [user_ids, WORKFLOW],
        ).fetchone()
        events = conn.execute(
            "select job_id::text as job_id, kind, step_id from public.job_events"
            " where job_id = any(%s::uuid[]) order by id",
            [b.all_ids],
        ).fetchall()
    with connect(stack.prefect_database_url) as conn:
        runs = conn.execute(
            "select parameters->>'job_id' as job_id, count(*) as n from flow_run"
            " where deployment_id = %s and parameters->>'job_id' = any(%s) group by 1",
            [deployment_id(stack, WARM_DEPLOYMENT), b.all_ids],
        ).fetchall()
    runs_per_job = {r["job_id"]: int(r["n"]) for r in runs}
    events_by_job: dict[str, list[dict[str, Any]]] = {}
    for e in events:
        events_by_job.setdefault(e["job_id"], []).append(e)
    by_key: dict[str, set[str]] = {}
    for a in b.answers:
        if a.get("job_id"):
            by_key.setdefault(a["key"], set()).add(a["job_id"])
    statuses = Counter(b.statuses.values())
    step_calls = Counter(n for j in b.all_ids for n in counter.hits(j).values())
    return {
        "requests": len(b.answers),
        "keys": len({a["key"] for a in b.answers}),
        "replayed_keys": replays,
        "answers_by_status": dict(Counter(str(a["status"]) for a in b.answers)),
        "distinct_jobs_from_api": len(b.job_ids),
        "keys_answered_with_two_jobs": sum(1 for v in by_key.values() if len(v) > 1),
        "job_rows_for_bench_users": int(rows_for_users["n"]) if rows_for_users else None,
        "undispatched_inserted": len(b.undispatched),
        "completed": statuses.get("completed", 0),
        "failed": statuses.get("failed", 0),
        "stuck": len(b.all_ids) - statuses.get("completed", 0) - statuses.get("failed", 0),
        "jobs_with_more_than_one_flow_run": sum(1 for n in runs_per_job.values() if n > 1),
        "jobs_without_flow_run": sum(1 for j in b.all_ids if j not in runs_per_job),
        "counted_calls_per_step": {str(k): v for k, v in sorted(step_calls.items())},
        "rerun_steps": sum(
            count_reruns(events_by_job.get(j, []), counter.hits(j)) for j in b.all_ids
        ),
        "post_seconds": round(b.post_seconds, 1),
        "drain_seconds": round(b.drain_seconds, 1),
        "jobs_per_second": round(len(b.all_ids) / b.drain_seconds, 2) if b.drain_seconds else None,
    }


def count_maintenance(b: Burst) -> dict[str, Any]:
    """Section 2: pass durations (idle and under load), what the passes dispatched and
    resubmitted."""
    dispatched = Counter(j for p in b.passes for j in p["dispatched"])
    return {
        "passes_under_load": len(b.passes),
        "pass_seconds_under_load": summarize([p["seconds"] for p in b.passes]),
        "pass_seconds_idle": summarize([p["seconds"] for p in b.idle["passes"]]),
        "pass_errors": sum(1 for p in b.passes if p["error"]),
        "undispatched_dispatched_by_maintenance": sum(1 for j in b.undispatched if dispatched[j]),
        "api_jobs_dispatched_by_maintenance_too": sum(1 for j in b.job_ids if dispatched[j]),
        "dispatched_twice": sum(1 for n in dispatched.values() if n > 1),
        "undispatched_completed": sum(
            1 for j in b.undispatched if b.statuses.get(j) == "completed"
        ),
        "resubmitted": sum(len(p["resubmitted"]) for p in b.passes),
        "failed_by_recovery": sum(len(p["failed"]) for p in b.passes),
        "recovery_errors": sum(len(p["recovery_errors"]) for p in b.passes),
    }


def print_sections(engine: dict[str, Any], baseline: dict[str, Any] | None) -> None:
    """The three sections' tables (and the raw baseline's)."""
    print_table(
        "1. Concurrent creation and processing",
        ["count", "engine"],
        list(engine["creation_and_processing"].items()),
    )
    if baseline is not None:
        print_table(
            "   baseline: the same keys through raw Prefect (run_deployment + idempotency_key)",
            ["count", "raw Prefect"],
            list(baseline.items()),
        )
    print_table(
        "2. Maintenance under load",
        ["count", "value"],
        [
            (k, v if not isinstance(v, dict) else f"p50 {v.get('p50')} s, max {v.get('max')} s")
            for k, v in engine["maintenance_under_load"].items()
        ],
    )
    rows = []
    for phase, r in engine["api_responsiveness"].items():
        cells = [r[k].get(q) for k in ("get_job_ms", "list_jobs_ms") for q in ("p50", "p99")]
        rows.append((phase, *cells, r["errors"]))
    print_table(
        "3. API responsiveness (ms)",
        ["phase", "GET /jobs/{id} p50", "p99", "GET /jobs p50", "p99", "errors"],
        rows,
    )


def targets_of(engine: dict[str, Any], args: argparse.Namespace) -> list[dict[str, Any]]:
    """Nothing lost, nothing duplicated, no healthy job resubmitted, no request failed."""
    creation, upkeep = engine["creation_and_processing"], engine["maintenance_under_load"]
    duplicates = (
        creation["keys_answered_with_two_jobs"] + creation["jobs_with_more_than_one_flow_run"]
    )
    duplicates += creation["rerun_steps"] + upkeep["dispatched_twice"]
    answers = creation["answers_by_status"]
    request_errors = sum(n for s, n in answers.items() if s not in ("200", "201"))
    request_errors += engine["api_responsiveness"]["under_load"]["errors"]
    expected = args.jobs + args.undispatched
    return [
        check("jobs completed (nothing lost)", creation["completed"], ">=", expected, "jobs"),
        check("duplicates (jobs, flow runs, re-run steps)", duplicates, "<=", 0, ""),
        check("healthy jobs resubmitted", upkeep["resubmitted"], "<=", 0, "jobs"),
        check(
            "undispatched jobs completed",
            upkeep["undispatched_completed"],
            ">=",
            args.undispatched,
            "jobs",
        ),
        check("request errors", request_errors, "<=", 0, ""),
    ]


def run(
    stack: LocalStack, args: argparse.Namespace, counter: CountingServer
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The three sections on the stack, then the raw baseline; (engine report, baseline)."""
    from cli.local_auth import ensure_local_user

    rng = random.Random(11)
    keys = [f"load-{i}-{secrets.token_hex(4)}" for i in range(args.jobs)]
    replays = set(rng.sample(keys, int(len(keys) * args.replay_share)))
    install_counting_workflow(WORKFLOW, counter.url)
    start_engine(stack, limit=args.limit)
    emails = [f"load-{u}@example.com" for u in range(args.users)]
    users = [(stack.mint_token(e), ensure_local_user(e)) for e in emails]
    user_ids = [u for _, u in users]
    seconds = seed_history(stack, user_ids, args.history_rows)
    print(f"seeded {args.history_rows} finished jobs in {seconds:.1f} s", flush=True)
    starts = calls(keys, replays)
    with stderr_to(stack.log_dir / "in-process-flows.log"):
        b = burst(stack, args, users, starts)
    engine = {
        "creation_and_processing": count_creation(stack, b, counter, user_ids, len(replays)),
        "maintenance_under_load": count_maintenance(b),
        "api_responsiveness": {"idle": b.idle["reads"], "under_load": b.reads},
    }
    timeout = args.timeout or 180 + args.jobs * 1.5
    baseline = None if args.no_baseline else raw_baseline(stack, starts, args.clients, timeout)
    stack.stop("warm-worker")
    return engine, baseline


def main(argv: list[str] | None = None) -> int:
    """Run the three sections, print their tables, write the JSON."""
    args = parse(
        __doc__,
        argv,
        ("--jobs", 300, "jobs started through the API"),
        ("--clients", 30, "requests in flight"),
        ("--users", 5, "users the jobs are spread over"),
        ("--replay-share", 0.2, "share of the keys posted twice at once"),
        ("--undispatched", 20, "jobs inserted without a flow run"),
        ("--history-rows", 100_000, "finished jobs in the table before the burst"),
        ("--maintenance-every", 3.0, "seconds between maintenance passes"),
        ("--sample-rate", 10.0, "reads per second"),
        ("--idle-seconds", 10.0, "idle sampling time"),
        ("--limit", 10, "warm worker limit"),
        ("--timeout", None, "seconds to drain at most"),
        ("--no-baseline", False, "skip the raw Prefect run"),
    )
    with perf_stack("load-concurrent", keep=args.keep) as stack, CountingServer() as counter:
        machine = machine_info()
        engine, baseline = run(stack, args, counter)
    print_sections(engine, baseline)
    targets = targets_of(engine, args)
    settings = {
        "jobs": args.jobs,
        "clients": args.clients,
        "users": args.users,
        "replay_share": args.replay_share,
        "undispatched": args.undispatched,
        "history_rows": args.history_rows,
        "maintenance_every_s": args.maintenance_every,
        "sample_rate_per_s": args.sample_rate,
        "warm_worker_limit": args.limit,
        "workflow": "fetch (counted HTTP call) -> reshape (no-op) -> notify (counted)",
    }
    baselines = {
        "raw_prefect_same_keys": baseline,
        "api_reads_idle": engine["api_responsiveness"]["idle"],
        "maintenance_idle": engine["maintenance_under_load"]["pass_seconds_idle"],
    }
    data = {"machine": machine, "settings": settings, "engine": engine, "baselines": baselines}
    return 0 if finish("load_concurrent", args, data, targets) else 1


if __name__ == "__main__":
    sys.exit(main())
