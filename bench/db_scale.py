"""Database at scale: 1M jobs over 10k users, generated in SQL; plans and times of the API's
queries and of the maintenance scans.

A scratch database (on the server of TEST_ADMIN_DATABASE_URL) gets the migrations, then
`--rows` jobs from one INSERT ... SELECT (bench/sql/): a heavy user owns 5%, the rest are
spread evenly; statuses as in MIX. Each query runs as the engine runs it (its .sql file, bound
parameters; the API's reads as role `authenticated` with the caller's claims, so RLS applies):
EXPLAIN (ANALYZE, BUFFERS) printed, then timed `--reps` times from the client. Baselines: each
API read without RLS, and a full scan of the table. Target: the list query p50 <= 10 ms.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import psycopg

if not __package__:  # run as a file: import `bench` from the project root
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from bench import report as out
from bench.stacks import Benchmark
from cli.databases import ScratchDatabase
from cli.stack import LocalStack

Connection = psycopg.Connection[dict[str, Any]]
LIST = "user_jobs_list"
LIST_DEFAULTS = {"limit": 21, **dict.fromkeys(["status", "workflow_id", "cursor_at", "cursor_id"])}
SCAN, WINDOW = {"grace_seconds": 10, "limit": 100}, {"window_seconds": 3600}
#: The dispatcher's claim: of the oldest `window` (4 x limit, as engine/db/store.py) pending.
PENDING = {**SCAN, "window": 400}
STALLED = {"running_seconds": 900, "retry_grace_seconds": 300, "limit": 100}
HEAVY = {"user_id": "$heavy"}
CURSOR = {**HEAVY, "cursor_at": "$cursor_at", "cursor_id": "$cursor_id"}
#: name, engine/db/sql file (None: a full scan), parameters ("$x": from the generated data),
#: the user it runs as under RLS (None: the service path).
CASES: list[tuple[str, str | None, dict[str, Any], str | None]] = [
    ("list: typical user ({typical_n} jobs), first page", LIST, {"user_id": "$typical"}, "typical"),
    ("list: heavy user ({heavy_n} jobs), first page", LIST, HEAVY, "heavy"),
    ("list: heavy user, status=failed", LIST, {**HEAVY, "status": "failed"}, "heavy"),
    ("list: heavy user, workflow filter", LIST, {**HEAVY, "workflow_id": "bench_wf_2"}, "heavy"),
    ("list: heavy user, page after 1,000 rows (cursor)", LIST, CURSOR, "heavy"),
    ("get by id", "user_job_get", {"job_id": "$job"}, "typical"),
    ("maintenance: jobs in flight (recovery)", "jobs_in_flight", SCAN, None),
    ("maintenance: pending, never dispatched", "jobs_pending_undispatched", PENDING, None),
    ("maintenance: alerts, stalled jobs", "alerts_active_jobs", STALLED, None),
    ("maintenance: alerts, failure window (1 h)", "alerts_failure_window", WINDOW, None),
    ("maintenance: alerts, queue length", "alerts_queue", {}, None),
    ("reference: full scan (count(*) of jobs)", None, {}, None),
]


def timed(conn: Connection, sql: str, params: dict[str, Any], user: str | None) -> Any:
    """(rows, seconds) of a query in a transaction rolled back, as `user` (None: no RLS)."""
    with conn.transaction(force_rollback=True):
        if user is not None:
            claims = json.dumps({"sub": user, "role": "authenticated"})
            conn.execute(out.sql("as_authenticated"), [claims])
        started = time.perf_counter()
        rows = conn.execute(sql, params).fetchall()
        return rows, time.perf_counter() - started


def measure(conn: Connection, sql: str, params: dict[str, Any], user: str | None, reps: int) -> Any:
    """EXPLAIN ANALYZE once, then `reps` timed runs; plan, execution time, rows, times."""
    plan_rows, _ = timed(conn, "explain (analyze, buffers, format text) " + sql, params, user)
    plan = "\n".join(str(next(iter(r.values()))) for r in plan_rows)
    lines = [line for line in plan.splitlines() if line.strip().startswith("Execution Time:")]
    runs = [timed(conn, sql, params, user) for _ in range(reps)]
    return {
        "plan": plan,
        "explain_execution_ms": float(lines[0].split(":")[1].split()[0]) if lines else None,
        "rows_returned": len(runs[-1][0]) if runs else 0,
        "client_ms": out.summarize([seconds * 1000 for _, seconds in runs]),
    }


def generate(conn: Connection, args: argparse.Namespace) -> tuple[dict[str, float], Any]:
    """Users, workflows and jobs (bench/sql/generate_*.sql), then VACUUM ANALYZE; (seconds,
    what the cases run with: bench/sql/subjects.sql)."""
    t0 = time.perf_counter()
    for name in ("users", "workflows", "jobs"):
        conn.execute(out.sql(f"generate_{name}"), {"users": args.users, "rows": args.rows})
    generation = {"insert_seconds": round(time.perf_counter() - t0, 1)}
    t0 = time.perf_counter()
    conn.execute("vacuum analyze public.jobs")
    conn.execute("vacuum analyze auth.users")
    generation["vacuum_analyze_seconds"] = round(time.perf_counter() - t0, 1)
    size = conn.execute(out.sql("jobs_size")).fetchone() or {}
    took = f"{generation['insert_seconds']} s (+ {generation['vacuum_analyze_seconds']} s vacuum)"
    print(f"generated {size.get('n')} jobs for {args.users} users in {took}", flush=True)
    print(f"jobs table with indexes: {size.get('total')}", flush=True)
    typical = f"bench-{min(500, args.users):06d}@example.com"
    return generation, conn.execute(out.sql("subjects"), [typical]).fetchone() or {}


def measure_all(_stack: LocalStack | None, args: argparse.Namespace) -> dict[str, Any]:
    """On a scratch database: migrate, generate, measure every case (and each API read
    without RLS), print the plans."""
    from engine.db.migrate import apply_migrations
    from engine.db.queries import load_sql

    results: dict[str, Any] = {}
    with closing(ScratchDatabase(out.admin_url(), "bench_dbscale")) as database:
        apply_migrations(database.url, bootstrap=True)
        with out.connect(database.url) as conn:
            generation, data = generate(conn, args)
            for title, sql_file, spec, as_user in CASES:
                name = title.format(**data)
                params = {k: data[v[1:]] if str(v).startswith("$") else v for k, v in spec.items()}
                params = {**LIST_DEFAULTS, **params} if sql_file == LIST else params
                sql = load_sql(sql_file) if sql_file else "select count(*) from public.jobs"
                user = data[as_user] if as_user else None
                print(f"measuring: {name}", flush=True)
                result = measure(conn, sql, params, user, args.reps)
                if user is not None:  # baseline: the same statement without RLS, as the owner
                    result["without_rls"] = measure(conn, sql, params, None, args.reps)
                group = "baseline" if sql_file is None else "api" if as_user else "maintenance"
                target = 10.0 if sql_file == LIST else None
                results[name] = {**result, "group": group, "target_ms": target}
                if not args.no_plans:
                    print(f"\n-- {name}\n{result['plan']}\n", flush=True)
    return {"generation": generation, "cases": results}


OPTIONS = [
    ("--rows", 1_000_000, "jobs (default 1,000,000)", "rows"),
    ("--users", 10_000, "users (default 10,000)", "users"),
    ("--reps", 30, "timed runs per query", "reps"),
    ("--no-plans", False, "do not print the plans"),
]
MIX = "97% completed, 2% failed, 0.5% running, 0.2% awaiting_retry, 0.2% pending with a flow run,"
MIX += " 0.1% pending without"


def show(args: Any, measured: dict[str, Any]) -> Any:
    """The table; the list query's targets."""
    results = measured["cases"]
    rows = [
        (
            case,
            r["rows_returned"],
            r["explain_execution_ms"],
            *out.cells(r["client_ms"], "p50", "p99"),
            r.get("without_rls", {}).get("client_ms", {}).get("p50"),
        )
        for case, r in results.items()
    ]
    headers = ["query", "rows", "EXPLAIN exec", "p50", "p99", "p50 without RLS"]
    title = f"Queries at {args.rows:,} jobs / {args.users:,} users (ms; {args.reps} runs each)"
    out.print_table(title, headers, rows)
    targets = [
        out.check(f"{case} p50", r["client_ms"].get("p50"), "<=", r["target_ms"], "ms")
        for case, r in results.items()
        if r["target_ms"] is not None
    ]
    rls = {k: v["without_rls"]["client_ms"] for k, v in results.items() if "without_rls" in v}
    baselines = {k: v for k, v in results.items() if v["group"] == "baseline"}
    engine = {k: v for k, v in results.items() if v["group"] != "baseline"}
    settings = {"heavy_user_share": 0.05, "status_mix": MIX}
    extra = {"settings": settings, "generation": measured["generation"], "engine": engine}
    return targets, {**extra, "baselines": {"without_rls": rls, **baselines}}, True


main = Benchmark("db_scale", __doc__, OPTIONS, measure_all, show, stack=False)

if __name__ == "__main__":
    sys.exit(main())
