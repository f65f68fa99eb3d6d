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
import asyncio
import random
import secrets
import sys
import threading
import time
from collections import Counter
from typing import Any

import httpx
from common import (
    NOOP_TRANSFORMER,
    BenchStack,
    check,
    common_arguments,
    machine_info,
    print_table,
    print_targets,
    stderr_to,
    summarize,
    write_report,
)
from harness import CountingServer, count_reruns
from psycopg.types.json import Jsonb

WORKFLOW = "bench_counting"


def install_counting_workflow(stack: BenchStack, counter_url: str) -> None:
    """`fetch` (counted call) -> `reshape` (no-op) -> `notify` (counted call)."""
    with stack.connect() as conn:
        conn.execute(
            "insert into public.transformers (id, type, description, config, target_function)"
            " values ('bench-count', 'http_request', 'bench: counting endpoint', %s,"
            " 'execute-http-request') on conflict (id) do update set config = excluded.config",
            [
                Jsonb(
                    {
                        "url_template": counter_url + "/count/{job}/{step}",
                        "request_timeout_seconds": 10,
                    }
                )
            ],
        )
        definition = {
            "steps": [
                {
                    "id": "fetch",
                    "transformer": "bench-count",
                    "input": {"job.$": "$.job.id", "step": "fetch"},
                },
                {
                    "id": "reshape",
                    "transformer": NOOP_TRANSFORMER,
                    "input": {"n.$": "$.steps.fetch.body.n"},
                },
                {
                    "id": "notify",
                    "transformer": "bench-count",
                    "input": {"job.$": "$.job.id", "step": "notify"},
                },
            ],
            "output": {"fetched.$": "$.steps.fetch.body.n", "notified.$": "$.steps.notify.body.n"},
        }
        conn.execute(
            "insert into public.workflows (id, description, definition)"
            " values (%s, 'bench: counting workflow', %s)"
            " on conflict (id) do update set definition = excluded.definition",
            [WORKFLOW, Jsonb(definition)],
        )


def seed_history(stack: BenchStack, user_ids: list[str], rows: int) -> float:
    """`rows` finished jobs spread over the users (generated in SQL); seconds it took."""
    started = time.perf_counter()
    with stack.connect() as conn:
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


class Sampler:
    """GET /jobs/{id} and GET /jobs?limit=20 at a fixed rate in a thread, until stopped."""

    def __init__(self, api_url: str, token: str, job_ids: list[str], rate: float) -> None:
        self.client = httpx.Client(
            base_url=api_url, headers={"Authorization": f"Bearer {token}"}, timeout=10
        )
        self.job_ids = job_ids
        self.rate = rate
        self.latencies: dict[str, list[float]] = {"get": [], "list": []}
        self.errors: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        rng = random.Random(3)
        i = 0
        next_at = time.monotonic()
        while not self._stop.is_set():
            kind = "get" if i % 2 == 0 else "list"
            path = f"/jobs/{rng.choice(self.job_ids)}" if kind == "get" else "/jobs?limit=20"
            started = time.perf_counter()
            try:
                response = self.client.get(path)
                if response.status_code != 200:
                    self.errors[f"{kind} {response.status_code}"] += 1
                else:
                    self.latencies[kind].append((time.perf_counter() - started) * 1000)
            except httpx.HTTPError as exc:
                self.errors[f"{kind} {type(exc).__name__}"] += 1
            i += 1
            next_at += 1 / self.rate
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def start(self) -> Sampler:
        """Start sampling."""
        self._thread.start()
        return self

    def stop(self) -> dict[str, Any]:
        """Stop; the summary."""
        self._stop.set()
        self._thread.join(30)
        self.client.close()
        return {
            "get_job_ms": summarize(self.latencies["get"]),
            "list_jobs_ms": summarize(self.latencies["list"]),
            "errors": sum(self.errors.values()),
            "error_kinds": dict(self.errors),
        }


class MaintenanceLoop:
    """The real maintenance flow, run in-process every `every` seconds, until stopped."""

    def __init__(self, every: float, grace: float) -> None:
        self.every = every
        self.grace = grace
        self.passes: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def run_once(self) -> dict[str, Any]:
        """One pass; its duration and decisions."""
        from flows.maintenance import maintenance

        started = time.perf_counter()
        try:
            result = maintenance(grace_seconds=self.grace)
            error = None
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

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.passes.append(self.run_once())
            self._stop.wait(self.every)

    def start(self) -> MaintenanceLoop:
        """Start the loop."""
        self._thread.start()
        return self

    def stop(self) -> list[dict[str, Any]]:
        """Stop after the current pass; every pass."""
        self._stop.set()
        self._thread.join(300)
        return self.passes


def post_all(
    api_url: str, tokens: list[str], keys: list[str], replays: set[str], clients: int
) -> list[dict[str, Any]]:
    """POST one start per key (and a second, simultaneous one per replayed key); answers."""

    async def run() -> list[dict[str, Any]]:
        gate = asyncio.Semaphore(clients)
        async with httpx.AsyncClient(
            base_url=api_url, timeout=60, limits=httpx.Limits(max_connections=clients)
        ) as client:

            async def one(index: int, key: str, attempt: int) -> dict[str, Any]:
                async with gate:
                    try:
                        response = await client.post(
                            "/workflows/start",
                            headers={
                                "Authorization": f"Bearer {tokens[index % len(tokens)]}",
                                "Idempotency-Key": key,
                            },
                            json={"workflow_id": WORKFLOW, "input_data": {"i": index}},
                        )
                    except httpx.HTTPError as exc:
                        return {"key": key, "attempt": attempt, "status": type(exc).__name__}
                    body = response.json()
                    return {
                        "key": key,
                        "attempt": attempt,
                        "status": response.status_code,
                        "job_id": body.get("job_id"),
                    }

            calls = []
            for index, key in enumerate(keys):
                calls.append(one(index, key, 1))
                if key in replays:
                    calls.append(one(index, key, 2))
            return list(await asyncio.gather(*calls))

    return asyncio.run(run())


def raw_baseline(
    stack: BenchStack, keys: list[str], replays: set[str], clients: int, timeout: float
) -> dict[str, Any]:
    """The same keys through raw Prefect on a warm worker: flow runs created and finished."""
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    pool = f"bench-rawwarm-{secrets.token_hex(3)}"
    deployment = stack.deploy_raw_warm(pool)
    worker = stack.start_warm_worker(pool, query_seconds=0.5, listen=False, name="raw-warm-worker")
    prefix = f"raw-{secrets.token_hex(3)}-"

    async def run() -> list[str | None]:
        gate = asyncio.Semaphore(clients)
        async with get_client() as client:

            async def one(index: int, key: str) -> str | None:
                async with gate:
                    try:
                        flow_run = await run_deployment(  # type: ignore[misc]
                            deployment,
                            client=client,
                            parameters={"x": {"i": index}, "steps": 3},
                            timeout=0,
                            as_subflow=False,
                            idempotency_key=prefix + key,
                        )
                        return str(flow_run.id)
                    except Exception:
                        return None

            calls = []
            for index, key in enumerate(keys):
                calls.append(one(index, key))
                if key in replays:
                    calls.append(one(index, key))
            return list(await asyncio.gather(*calls))

    started = time.monotonic()
    ids = asyncio.run(run())
    distinct = sorted({i for i in ids if i is not None})
    state: dict[str, Any] = {"counts": {}}
    while time.monotonic() - started < timeout:
        state = stack.flow_run_outcomes(distinct)
        final = sum(state["counts"].get(k, 0) for k in ("COMPLETED", "FAILED", "CRASHED"))
        if final >= len(distinct):
            break
        time.sleep(0.5)
    with stack.prefect_connect() as conn:
        row = conn.execute(
            "select count(*) as n, count(distinct idempotency_key) as keys from flow_run"
            " where deployment_id = %s",
            [deployment],
        ).fetchone()
    stack.stop(worker)
    return {
        "requests": len(ids),
        "request_errors": sum(1 for i in ids if i is None),
        "distinct_flow_runs": len(distinct),
        "flow_run_rows": int(row["n"]) if row else None,
        "distinct_keys": int(row["keys"]) if row else None,
        "completed": state["counts"].get("COMPLETED", 0),
        "not_completed": len(distinct) - state["counts"].get("COMPLETED", 0),
        "seconds": round(time.monotonic() - started, 1),
    }


def main(argv: list[str] | None = None) -> int:
    """Run the three sections, print their tables, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument("--clients", type=int, default=30, help="requests in flight")
    parser.add_argument("--users", type=int, default=5)
    parser.add_argument("--replay-share", type=float, default=0.2)
    parser.add_argument("--undispatched", type=int, default=20)
    parser.add_argument("--history-rows", type=int, default=100_000)
    parser.add_argument("--maintenance-every", type=float, default=3.0)
    parser.add_argument("--sample-rate", type=float, default=10.0, help="reads per second")
    parser.add_argument("--idle-seconds", type=float, default=10.0, help="idle sampling time")
    parser.add_argument("--limit", type=int, default=10, help="warm worker limit")
    parser.add_argument("--timeout", type=float, default=None, help="seconds to drain at most")
    parser.add_argument("--no-baseline", action="store_true", help="skip the raw Prefect run")
    common_arguments(parser)
    args = parser.parse_args(argv)
    timeout = args.timeout or 180 + args.jobs * 1.5
    rng = random.Random(11)
    keys = [f"load-{i}-{secrets.token_hex(4)}" for i in range(args.jobs)]
    replays = set(rng.sample(keys, int(len(keys) * args.replay_share)))
    report: dict[str, Any] = {}
    with (
        BenchStack("load-concurrent", keep=args.keep, env={"HTTP_ALLOWLIST": "127.0.0.1"}) as stack,
        CountingServer() as counter,
    ):
        machine = machine_info()
        from cli.local_auth import ensure_local_user
        from engine.db.connection import shared_store

        install_counting_workflow(stack, counter.url)
        deployment = stack.deploy_engine()
        stack.start_warm_worker(limit=args.limit)
        stack.start_api()
        emails = [f"load-{u}@example.com" for u in range(args.users)]
        tokens = [stack.token(e) for e in emails]
        user_ids = [ensure_local_user(e) for e in emails]
        history_seconds = seed_history(stack, user_ids, args.history_rows)
        print(f"seeded {args.history_rows} finished jobs in {history_seconds:.1f} s", flush=True)
        log = stack.log_dir / "in-process-flows.log"
        with stderr_to(log):
            # Idle baselines: reads, then maintenance passes.
            with stack.connect() as conn:
                sample_ids = [
                    r["id"]
                    for r in conn.execute(
                        "select id::text as id from public.jobs where user_id = %s limit 50",
                        [user_ids[0]],
                    ).fetchall()
                ]
            sampler = Sampler(stack.api_url, tokens[0], sample_ids, args.sample_rate).start()
            time.sleep(args.idle_seconds)
            idle_reads = sampler.stop()
            idle_maintenance = [MaintenanceLoop(0, 2.0).run_once() for _ in range(3)]

            # The burst, with maintenance and reads running alongside.
            maintenance = MaintenanceLoop(args.maintenance_every, 2.0).start()
            sampler = Sampler(stack.api_url, tokens[0], sample_ids, args.sample_rate).start()
            started = time.monotonic()
            answers = post_all(stack.api_url, tokens, keys, replays, args.clients)
            post_seconds = time.monotonic() - started
            store = shared_store()
            undispatched = [
                store.create_job(
                    user_id=user_ids[i % len(user_ids)], workflow_id=WORKFLOW, input_data={"i": -i}
                ).id
                for i in range(args.undispatched)
            ]
            job_ids = sorted({a["job_id"] for a in answers if a.get("job_id")})
            all_ids = job_ids + undispatched
            statuses: dict[str, str] = {}
            while time.monotonic() - started < timeout:
                with stack.connect() as conn:
                    statuses = {
                        r["id"]: r["status"]
                        for r in conn.execute(
                            "select id::text as id, status from public.jobs"
                            " where id = any(%s::uuid[])",
                            [all_ids],
                        ).fetchall()
                    }
                if len(statuses) == len(all_ids) and all(
                    s in ("completed", "failed") for s in statuses.values()
                ):
                    break
                time.sleep(0.5)
            drain_seconds = time.monotonic() - started
            load_reads = sampler.stop()
            passes = maintenance.stop()

            # Counting.
            with stack.connect() as conn:
                rows_for_users = conn.execute(
                    "select count(*) as n from public.jobs where user_id = any(%s::uuid[])"
                    " and workflow_id = %s",
                    [user_ids, WORKFLOW],
                ).fetchone()
                events = conn.execute(
                    "select job_id::text as job_id, kind, step_id from public.job_events"
                    " where job_id = any(%s::uuid[]) order by id",
                    [all_ids],
                ).fetchall()
            with stack.prefect_connect() as conn:
                runs = conn.execute(
                    "select parameters->>'job_id' as job_id, count(*) as n from flow_run"
                    " where deployment_id = %s group by 1",
                    [deployment],
                ).fetchall()
            runs_per_job = {r["job_id"]: int(r["n"]) for r in runs}
            events_by_job: dict[str, list[dict[str, Any]]] = {}
            for e in events:
                events_by_job.setdefault(e["job_id"], []).append(e)
            reruns = sum(count_reruns(events_by_job.get(j, []), counter.hits(j)) for j in all_ids)
            step_calls = Counter(n for j in all_ids for n in counter.hits(j).values())
            by_key: dict[str, set[str]] = {}
            for a in answers:
                if a.get("job_id"):
                    by_key.setdefault(a["key"], set()).add(a["job_id"])
            status_counts = Counter(statuses.values())
            dispatched_by_maintenance = Counter(j for p in passes for j in p["dispatched"])
            creation: dict[str, Any] = {
                "requests": len(answers),
                "keys": len(keys),
                "replayed_keys": len(replays),
                "answers_by_status": dict(Counter(str(a["status"]) for a in answers)),
                "distinct_jobs_from_api": len(job_ids),
                "keys_answered_with_two_jobs": sum(1 for v in by_key.values() if len(v) > 1),
                "job_rows_for_bench_users": int(rows_for_users["n"]) if rows_for_users else None,
                "undispatched_inserted": len(undispatched),
                "completed": status_counts.get("completed", 0),
                "failed": status_counts.get("failed", 0),
                "stuck": len(all_ids)
                - status_counts.get("completed", 0)
                - status_counts.get("failed", 0),
                "jobs_with_more_than_one_flow_run": sum(1 for n in runs_per_job.values() if n > 1),
                "jobs_without_flow_run": sum(1 for j in all_ids if j not in runs_per_job),
                "counted_calls_per_step": {str(k): v for k, v in sorted(step_calls.items())},
                "rerun_steps": reruns,
                "post_seconds": round(post_seconds, 1),
                "drain_seconds": round(drain_seconds, 1),
                "jobs_per_second": round(len(all_ids) / drain_seconds, 2)
                if drain_seconds
                else None,
            }
            maintenance_report: dict[str, Any] = {
                "passes_under_load": len(passes),
                "pass_seconds_under_load": summarize([p["seconds"] for p in passes]),
                "pass_seconds_idle": summarize([p["seconds"] for p in idle_maintenance]),
                "pass_errors": sum(1 for p in passes if p["error"]),
                "undispatched_dispatched_by_maintenance": sum(
                    1 for j in undispatched if dispatched_by_maintenance.get(j)
                ),
                "api_jobs_dispatched_by_maintenance_too": sum(
                    1 for j in job_ids if dispatched_by_maintenance.get(j)
                ),
                "dispatched_twice": sum(1 for n in dispatched_by_maintenance.values() if n > 1),
                "undispatched_completed": sum(
                    1 for j in undispatched if statuses.get(j) == "completed"
                ),
                "resubmitted": sum(len(p["resubmitted"]) for p in passes),
                "failed_by_recovery": sum(len(p["failed"]) for p in passes),
                "recovery_errors": sum(len(p["recovery_errors"]) for p in passes),
            }
            responsiveness = {"idle": idle_reads, "under_load": load_reads}
            report = {
                "creation_and_processing": creation,
                "maintenance_under_load": maintenance_report,
                "api_responsiveness": responsiveness,
            }
            baseline = (
                None
                if args.no_baseline
                else raw_baseline(stack, keys, replays, args.clients, timeout)
            )

    print_table(
        "1. Concurrent creation and processing",
        ["count", "engine"],
        [(k, v) for k, v in creation.items()],
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
            for k, v in maintenance_report.items()
        ],
    )
    print_table(
        "3. API responsiveness (ms)",
        ["phase", "GET /jobs/{id} p50", "p99", "GET /jobs p50", "p99", "errors"],
        [
            (
                phase,
                r["get_job_ms"].get("p50"),
                r["get_job_ms"].get("p99"),
                r["list_jobs_ms"].get("p50"),
                r["list_jobs_ms"].get("p99"),
                r["errors"],
            )
            for phase, r in responsiveness.items()
        ],
    )
    expected = len(keys) + args.undispatched
    duplicates = (
        creation["keys_answered_with_two_jobs"]
        + creation["jobs_with_more_than_one_flow_run"]
        + creation["rerun_steps"]
        + maintenance_report["dispatched_twice"]
    )
    request_errors = (
        sum(n for s, n in creation["answers_by_status"].items() if s not in ("200", "201"))
        + load_reads["errors"]
    )
    targets = [
        check("jobs completed (nothing lost)", creation["completed"], ">=", expected, "jobs"),
        check("duplicates (jobs, flow runs, re-run steps)", duplicates, "<=", 0, ""),
        check("healthy jobs resubmitted", maintenance_report["resubmitted"], "<=", 0, "jobs"),
        check(
            "undispatched jobs completed",
            maintenance_report["undispatched_completed"],
            ">=",
            args.undispatched,
            "jobs",
        ),
        check("request errors", request_errors, "<=", 0, ""),
    ]
    print_targets(targets)
    write_report(
        "load_concurrent",
        {
            "machine": machine,
            "settings": {
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
            },
            "engine": report,
            "baselines": {
                "raw_prefect_same_keys": baseline,
                "api_reads_idle": responsiveness["idle"],
                "maintenance_idle": maintenance_report["pass_seconds_idle"],
            },
            "targets": targets,
            "all_met": all(t["met"] for t in targets),
        },
        args.report,
    )
    return 0 if all(t["met"] for t in targets) else 1


if __name__ == "__main__":
    sys.exit(main())
